"""psu's one way of writing JSON: byte-stable, so equal data gives equal bytes.

Manifests (whose hash is the build id), bundle manifests, build descriptions,
recorded compiles, the records of built bundles and every `--json` answer of
the CLI are written by `dumps`: sorted keys, one-space indent, ASCII only,
`\\n` line ends, a final newline.  The analysis caches, read only by psu,
are written `compact` (no indent): the same sorted keys, smaller files.
"""
import json


def dumps(data, compact=False):
    """`data` as byte-stable JSON text (sorted keys, indent 1 or `compact`, ASCII,
    final newline)."""
    if compact:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=True) + "\n"


def write(path, data):
    """Write `data` to `path` as `dumps` spells it (`\\n` line ends on every system)."""
    with open(path, "w", newline="\n") as f:
        f.write(dumps(data))

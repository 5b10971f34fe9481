"""psu's one way of writing JSON: byte-stable, so equal data gives equal bytes.

Manifests (whose hash is the build id), bundle manifests, build descriptions,
recorded compiles and every `--json` answer of the CLI are written by `dumps`:
sorted keys, one-space indent, ASCII only, `\\n` line ends, a final newline.
"""
import json


def dumps(data):
    """`data` as byte-stable JSON text (sorted keys, indent 1, ASCII, final newline)."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=True) + "\n"


def write(path, data):
    """Write `data` to `path` as `dumps` spells it (`\\n` line ends on every system)."""
    with open(path, "w", newline="\n") as f:
        f.write(dumps(data))

"""C front end: preprocess a unit like its real compile, parse it with pycparser, build a `model.Unit`.

Only definitions whose coordinates lie in the unit itself are described; what
headers define is summarised as helpers (for the inlined-helper rule, SPEC §4.4).
Everything that could differ between two checkouts of the same source
(`__FILE__`, `__LINE__`, `__DATE__`, line markers, directories) is neutralised
before hashing, so a manifest is a function of the source and flags alone.

The steps live in modules of one job each: `preprocess` (the compiler's runs),
`cparse` (parsing, and locating a parse error), `typecanon` (types as text,
hashes and layouts), `declarators` and `astfacts` (what declarations and
bodies say), `describe` (the unit's model), `analysis_cache` (whole units)
and `incremental` (a unit again, reusing its unchanged definitions).
"""
import concurrent.futures
import os

from . import analysis_cache, incremental
from .cparse import parse
from .describe import describe
from .digest import sha256
from .errors import CSourceError
from .model import Unit
from .preprocess import (NORMALISING_DEFINES, PARSE_ONLY_DEFINES, code_text_hash, normalised_text,
                         preprocess, preprocessing_flags, storage_macros)
from .typecanon import type_key

# `analyse` is the front end; the rest is what other modules imported from here
# before the front end was split into modules of one job each.
__all__ = ["analyse", "code_text_hash", "describe", "normalised_text", "parse", "preprocess",
           "preprocessing_flags", "sha256", "storage_macros", "type_key", "NORMALISING_DEFINES",
           "PARSE_ONLY_DEFINES"]


def analyse(path, cc, flags, cwd, dsu=True, cache_dir=None):
    """Preprocess, parse and describe the unit `path` (relative to `cwd`).  A unit
    outside the DSU units is described too (its definitions are compared, not its
    text), unless it cannot be parsed: then its text is all there is to compare."""
    # the compiler runs three times over the unit: side by side
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as runs:
        preprocessing = runs.submit(preprocess, path, cc, flags, cwd)
        compiler_view = runs.submit(code_text_hash, path, cc, flags, cwd)
        macros = runs.submit(storage_macros, path, cc, flags, cwd) if dsu else None
        preprocessed, text_hash = preprocessing.result(), compiler_view.result()
        macros = macros.result() if macros is not None else None
    with open(os.path.join(cwd, path), "rb") as f:
        original_bytes = f.read()
    key = analysis_cache.unit_key(path, dsu, original_bytes, preprocessed) if cache_dir else None
    unit = analysis_cache.load_unit(cache_dir, key) if key else None
    if unit is None:
        with open(os.path.join(cwd, path), encoding="utf-8", errors="surrogateescape") as f:
            original = f.read()
        unit = None
        if key:     # reuse what the cache knows of its function definitions
            unit = incremental.analyse(preprocessed, path, dsu, original, sha256(preprocessed), cache_dir)
        if unit is None:
            unit = _described(path, dsu, preprocessed, original, cwd)
        if dsu:
            unit.storage_macros = macros
        if key:
            analysis_cache.store_unit(cache_dir, key, unit)
    # the compiler's view (attributes, pragmas) is not in the key: always its own
    unit.text_hash = text_hash
    return unit


def _described(path, dsu, preprocessed, original, cwd):
    source_hash = sha256(preprocessed)
    try:
        return describe(parse(preprocessed, path, original, cwd), path, "", dsu=dsu,
                        source_hash=source_hash, original_text=original)
    except CSourceError:
        if dsu:
            raise
        # outside the DSU units psu only compares what a unit defines: when it
        # cannot read the unit, its text is compared instead
        return Unit(path=path, text_hash="", dsu=False, source_hash=source_hash, described=False)

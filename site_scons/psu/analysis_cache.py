"""Cached analyses: a unit's model stored under a key of everything it depends on.

A key covers the analyser itself (the text of every front-end module, so an
edit to any of them invalidates what it wrote), the unit's path, whether it is
a DSU unit, its original text (names made by macros are judged on it) and its
preprocessed text.
"""
import functools
import hashlib
import json
import os
import threading

from . import jsonfile
from .model import Unit

# Bump when the model or its hashing changes without a front-end module's text
# changing (the modules' text is part of every key already).
ANALYSIS_VERSION = "14"

# The modules whose code decides what an analysis holds.
_ANALYSER_MODULES = ("analysis_cache", "astfacts", "cparse", "declarators", "describe", "digest",
                     "frontend", "gnuc", "incremental", "model", "preprocess", "typecanon")


@functools.lru_cache(maxsize=None)
def analyser_hash():
    digest = hashlib.sha256(ANALYSIS_VERSION.encode())
    folder = os.path.dirname(os.path.abspath(__file__))
    for module in _ANALYSER_MODULES:
        path = os.path.join(folder, module + ".py")
        if os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def unit_key(path, dsu, original_bytes, preprocessed):
    original_hash = hashlib.sha256(original_bytes).hexdigest()
    return hashlib.sha256(f"{analyser_hash()}\n{path}\n{dsu}\n{original_hash}\n{preprocessed}"
                          .encode()).hexdigest()


def _file_of(cache_dir, key, suffix):
    return os.path.join(cache_dir, key[:2], key + suffix)


def load_unit(cache_dir, key):
    """The cached model under `key`, or None."""
    try:
        with open(_file_of(cache_dir, key, ".json")) as f:
            return Unit.from_json(json.load(f))
    except (OSError, ValueError):
        return None


def store_unit(cache_dir, key, unit):
    write_atomically(_file_of(cache_dir, key, ".json"), jsonfile.dumps(unit.to_json(), compact=True))


def write_atomically(path, text):
    """Readers see the whole file or none (builds of several units run in
    parallel, in processes and in SCons's threads)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + f".{os.getpid()}.{threading.get_ident()}"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)

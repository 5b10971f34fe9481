"""Incremental analysis: a unit analysed again after an edit, reusing the cached
records of its unchanged function definitions, is the full analysis byte for
byte -- whatever the edit: a body, a declaration above many bodies, a static
variable, lines inserted above a body or inside it."""
import json
import shutil

import pytest

from psu import frontend, manifest

BASE = r"""#include <pthread.h>
#include <string.h>

#define LIMIT 10
#define TWICE(x) ((x) * 2)

typedef int count_t;
typedef struct point { int x; int y; } point;
enum colour { RED, GREEN = 5, BLUE };
struct node { struct node *next; count_t value; };

static const int table[] = { 1, 2, 3 };
static int hits;
int shared = 4;

static int helper(int a) { return a + LIMIT; }

int sum(struct node *n)
{
    count_t total = 0;
    while (n) {
        total += n->value;
        n = n->next;
    }
    return total;
}

int area(point p)
{
    static int calls;
    calls++;
    return p.x * p.y + TWICE(calls);
}

/* a comment long enough that the preprocessor
   marks the line again after it:
   1
   2
   3
   4
   5
   6
   7
   8
   9 */
int colour_value(enum colour c)
{
    static int calls;
    int value = c == GREEN ? table[1] : BLUE;
    /* inside the body too:
       1
       2
       3
       4
       5
       6
       7
       8
       9 */
    calls += value;
    return value + hits;
}

static void *worker(void *arg) { hits++; return arg; }

int start(void)
{
    pthread_t thread;
    int (*pointer)(int) = helper;
    return pthread_create(&thread, 0, worker, 0) + pointer(shared);
}

int last(int x) { return helper(x) + area((point){ x, x }); }
"""


def _edit(text, old, new, count=1):
    assert old in text
    return text.replace(old, new, count)


EDITS = {
    "one body": lambda t: _edit(t, "total += n->value;", "total += n->value + 1;"),
    "one body, lines added": lambda t: _edit(t, "count_t total = 0;", "count_t total = 0;\n\n    total -= 0;\n"),
    "lines inserted above a body": lambda t: _edit(t, "int sum(struct node *n)", "\n\n\nint sum(struct node *n)"),
    "many lines inserted above (a line marker)": lambda t: _edit(t, "static int hits;", "static int hits;" + "\n" * 12),
    "lines inside a body's marked gap": lambda t: _edit(t, "       9 */\n    calls", "       9\n\n\n */\n    calls"),
    "a typedef added": lambda t: _edit(t, "typedef int count_t;", "typedef int count_t;\ntypedef long wide_t;"),
    "a typedef renamed": lambda t: t.replace("count_t", "counter_t"),
    "a typedef's type changed": lambda t: _edit(t, "typedef int count_t;", "typedef long count_t;"),
    "a struct member changed": lambda t: _edit(t, "struct node { struct node *next; count_t value; };",
                                               "struct node { struct node *next; long pad; count_t value; };"),
    "a macro changed": lambda t: _edit(t, "#define LIMIT 10", "#define LIMIT 11"),
    "a static variable changed": lambda t: _edit(t, "static const int table[] = { 1, 2, 3 };",
                                                 "static const int table[] = { 1, 7, 3 };"),
    "a static variable's type changed": lambda t: _edit(t, "static int hits;", "static long hits;"),
    "an enumerator's value changed": lambda t: _edit(t, "GREEN = 5", "GREEN = 6"),
    "an address no longer taken": lambda t: _edit(t, "int (*pointer)(int) = helper;",
                                                  "int (*pointer)(int) = 0;"),
    "a thread routine no longer started": lambda t: _edit(t, "pthread_create(&thread, 0, worker, 0)", "0"),
    "a local static's binding moves": lambda t: _edit(t, "    static int calls;\n    calls++;",
                                                      "    int calls = 0;\n    calls++;"),
    "a body moved down": lambda t: _edit(_edit(t, "int last(int x) { return helper(x) + area((point){ x, x }); }\n", ""),
                                         "static void *worker", "int last(int x) { return helper(x) + area((point){ x, x }); }\n\nstatic void *worker"),
    "a name now made by a macro": lambda t: _edit(t, "int sum(struct node *n)",
                                                  "#define SUM_NAME sum\nint SUM_NAME(struct node *n)"),
    "a function named as a local static added": lambda t: t + "\nint calls(void) { return 0; }\n",
    "a function added": lambda t: _edit(t, "int sum(struct node *n)", "int added(void) { return 1; }\n\nint sum(struct node *n)"),
}


def _manifest_bytes(unit):
    built = manifest.build("p", "v", [unit], "gcc", ["-O2"])
    return json.dumps(unit.to_json(), sort_keys=True) + "\n" + json.dumps(built, sort_keys=True)


def _analyse(root, cache=None):
    return frontend.analyse("unit.c", "gcc", ["-O2"], str(root), cache_dir=str(cache) if cache else None)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_incremental_analysis_equals_the_full_one(tmp_path, edit):
    cache = tmp_path / "cache"
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    (before / "unit.c").write_text(BASE)
    edited = EDITS[edit](BASE)
    assert edited != BASE
    (after / "unit.c").write_text(edited)
    # the cached analysis of `before` is itself the full one
    assert _manifest_bytes(_analyse(before, cache)) == _manifest_bytes(_analyse(before))
    records = set(cache.rglob("*.record"))
    assert records, "no function records cached"
    incremental = _analyse(after, cache)
    assert _manifest_bytes(incremental) == _manifest_bytes(_analyse(after))


def test_unchanged_definitions_are_not_described_again(tmp_path):
    """A one-body edit stores one new record: the others were reused."""
    cache = tmp_path / "cache"
    (tmp_path / "unit.c").write_text(BASE)
    _analyse(tmp_path, cache)
    records = set(cache.rglob("*.record"))
    (tmp_path / "unit.c").write_text(EDITS["one body, lines added"](BASE))
    _analyse(tmp_path, cache)
    assert len(set(cache.rglob("*.record")) - records) == 1


def test_a_function_added_describes_it_and_its_callers_only(tmp_path):
    """A new definition is described; so is every definition that names it
    (its callees change) though its own text does not; the rest are reused."""
    cache = tmp_path / "cache"
    # `later` is called before anything declares it (an implicit declaration)
    text = BASE.replace("int last(int x) { return helper(x)", "int last(int x) { return later(x) + helper(x)")
    (tmp_path / "unit.c").write_text(text)
    first = _analyse(tmp_path, cache)
    assert "later" not in next(f for f in first.functions if f.name == "last").callees
    records = set(cache.rglob("*.record"))
    (tmp_path / "unit.c").write_text(text + "\nint later(int x) { return x; }\n")
    incremental = _analyse(tmp_path, cache)
    assert "later" in next(f for f in incremental.functions if f.name == "last").callees
    assert _manifest_bytes(incremental) == _manifest_bytes(_analyse(tmp_path))
    # one new record, `later`'s; `last`'s is written again under its key
    assert len(set(cache.rglob("*.record")) - records) == 1


def test_a_stale_record_is_never_served(tmp_path):
    """A declaration the body does not spell (a struct member) changes what the
    body's description says: the record must not be reused."""
    cache = tmp_path / "cache"
    (tmp_path / "unit.c").write_text(BASE)
    first = _analyse(tmp_path, cache)
    (tmp_path / "unit.c").write_text(EDITS["a struct member changed"](BASE))
    second = _analyse(tmp_path, cache)
    hashes = lambda unit: {f.name: f.body_hash for f in unit.functions}  # noqa: E731
    assert hashes(first)["sum"] != hashes(second)["sum"]
    assert hashes(first)["area"] == hashes(second)["area"]


def test_an_exported_tree_hits_the_checkouts_cache(tmp_path):
    """`scons patch` analyses FROM exported under .psu-build/revisions/<sha>:
    the release build's analysis of the same sources is reused as it is."""
    cache = tmp_path / "cache"
    checkout = tmp_path / "checkout"
    (checkout / "include").mkdir(parents=True)
    (checkout / "include" / "types.h").write_text("typedef int count_t;\n")
    (checkout / "unit.c").write_text('#include "types.h"\n' + BASE)
    flags = ["-O2", "-Iinclude"]
    first = frontend.analyse("unit.c", "gcc", flags, str(checkout), cache_dir=str(cache))
    stored = set(cache.rglob("*"))
    exported = tmp_path / ".psu-build" / "revisions" / "0123abcd"
    shutil.copytree(checkout, exported)
    again = frontend.analyse("unit.c", "gcc", flags, str(exported), cache_dir=str(cache))
    assert set(cache.rglob("*")) == stored
    assert _manifest_bytes(again) == _manifest_bytes(first)


@pytest.mark.realcode
def test_sqlite_one_body_change_analysed_incrementally_is_the_full_analysis(tmp_path):
    """sqlite3.c 3.45.0 with one body changed (two lines added: every definition
    below moves down), FROM's analysis cached: the same unit as a full analysis."""
    from test_changes_realcode import SQLITE_FLAGS, sqlite_sources
    root = sqlite_sources("3.45.0", tmp_path / "src")
    cache = tmp_path / "cache"
    frontend.analyse("sqlite3.c", "cc", SQLITE_FLAGS, str(root), cache_dir=str(cache))
    amalgamation = root / "sqlite3.c"
    head = "SQLITE_API int sqlite3_libversion_number(void){"
    text = amalgamation.read_text(errors="surrogateescape")
    amalgamation.write_text(text.replace(head, head + "\n  int unused = 1;\n  (void)unused;\n", 1),
                            errors="surrogateescape")
    records = set(cache.rglob("*.record"))
    incremental = frontend.analyse("sqlite3.c", "cc", SQLITE_FLAGS, str(root), cache_dir=str(cache))
    assert len(set(cache.rglob("*.record")) - records) == 1     # only the changed body described
    full = frontend.analyse("sqlite3.c", "cc", SQLITE_FLAGS, str(root))
    assert json.dumps(incremental.to_json(), sort_keys=True) == json.dumps(full.to_json(), sort_keys=True)

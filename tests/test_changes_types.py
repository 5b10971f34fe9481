"""Issue 10: change analysis by type and by definition, on units analysed
directly (no build): a changed type is reported once, with what changed in it
and what state reaches it; signatures change only by their own text; units
outside PSU_UNITS are compared by what they define; the build id covers
attributes."""
import pytest

from psu import changes, frontend, manifest
from psu.errors import NoChanges, RefusedChanges

HEADER = """\
struct inner { int depth;%(inner)s };
struct node { struct node *next; struct inner *where; int %(count)s;%(more)s };
struct callbacks { void (*visit)(struct opaque_arg *arg); };
struct opaque_arg { int %(opaque)s; };
struct local_only { int a; int b; };
int use(struct node *n);
int outside(int v)%(attribute)s;
%(extra)s
"""

UNIT = """\
#include "t.h"
static struct node head;
static struct callbacks hooks;
static struct node *cursor = (struct node *)0;   /* its initializer names a type */
int use(struct node *n) { struct local_only l = { 1, 2 }; return n->%(count)s + l.a + head.%(count)s; }
int again(void) { return use(cursor ? cursor : &head) + (hooks.visit != 0); }
"""

PLAIN = """\
#include "t.h"
int outside(int v) { return v + 1; }
"""


def manifest_of(root, count="count", opaque="x", extra="", attribute="", local="", more="", inner="",
                main="0"):
    header = HEADER % dict(count=count, opaque=opaque, extra=extra, attribute=attribute,
                           more=more, inner=inner)
    (root / "t.h").write_text(header.replace("int a;", "int a;" + local))
    (root / "t.c").write_text(UNIT % dict(count=count) + f"int main(void) {{ return again() + {main}; }}\n")
    (root / "plain.c").write_text(PLAIN)
    units = [frontend.analyse("t.c", "cc", ["-O2"], str(root)),
             frontend.analyse("plain.c", "cc", ["-O2"], str(root), dsu=False)]
    return manifest.build("t", str(root.name), units, "cc", ["-O2"])


@pytest.fixture
def versions(tmp_path):
    def make(**settings):
        root = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return manifest_of(root, **settings)
    return make


def refusals(old, new, accept=()):
    with pytest.raises(RefusedChanges) as refused:
        changes.compare(old, new, accept=accept)
    return [str(r) for r in refused.value.refusals]


def test_a_renamed_member_is_one_refusal_of_its_type_not_of_every_signature(versions):
    old, new = versions(), versions(count="total")
    found = refusals(old, new)
    assert found == [
        "t.h:2: type: struct node: count renamed total, same layout; existing state holds it: "
        "reached by 2 variable(s) (t.c:cursor, t.c:head) and the signatures of 1 function(s) (use); the "
        "patch's functions using it: use (to accept: PSU_ACCEPT=['type:struct node'])"]


def test_a_type_change_the_user_vouches_for_is_accepted_by_name_only(versions):
    old, new = versions(), versions(count="total")
    change_set = changes.compare(old, new, accept=["type:node"])
    assert change_set.replaced == {"use": "t.c"}
    assert any(note.startswith("accepted type:struct node") for note in change_set.notes)
    assert len(refusals(old, new, accept=["type:inner"])) == 1


def test_a_layout_change_cannot_be_accepted(versions):
    old, new = versions(), versions(more=" int added;")
    found = refusals(old, new, accept=["type:node"])
    assert len(found) == 1 and "added added, layout changed" in found[0]
    assert "PSU_ACCEPT" not in found[0]


def test_types_reached_only_through_function_pointer_parameters_or_only_by_bodies_are_no_state(versions):
    old = versions()
    with pytest.raises(NoChanges) as nothing:
        changes.compare(old, versions(opaque="y"))
    assert "nothing to patch" in str(nothing.value)
    change_set = changes.compare(old, versions(local=" int c;"))
    assert change_set.replaced == {"use": "t.c"} and not change_set.refusals


def test_a_signature_is_changed_only_by_its_own_text(versions):
    """use() takes a struct node *, which points to struct inner: a new member
    of struct inner is one refusal of that type, and no signature changed (nor
    the initializer of `cursor`, which names struct node: only layouts count)."""
    found = refusals(versions(), versions(inner=" int width;"))
    assert len(found) == 1 and found[0].startswith(
        "t.h:1: type: struct inner: width added, layout changed; existing state holds it: "
        "reached by 2 variable(s) (t.c:cursor, t.c:head) and the signatures of 1 function(s) (use)")


def test_a_declaration_added_to_a_header_of_a_plain_unit_is_no_change(versions):
    old = versions()
    new = versions(extra="int declared_later(int);", local=" int c;")
    assert changes.compare(old, new).replaced == {"use": "t.c"}


def test_a_changed_definition_outside_the_dsu_units_is_refused_by_function(versions, tmp_path):
    old = versions()
    root = tmp_path / "changed"
    root.mkdir()
    global PLAIN
    saved = PLAIN
    try:
        PLAIN = PLAIN.replace("v + 1", "v + 2")
        new = manifest_of(root)
    finally:
        PLAIN = saved
    assert refusals(old, new) == [
        "plain.c:2: outside-dsu: outside: changed outside the DSU units (add plain.c to PSU_UNITS "
        "to update it live); if accepted, it stays at its old version (to accept: PSU_ACCEPT=['stale:outside'])"]


def test_the_build_id_covers_attributes_and_pragmas(versions):
    plain = versions()
    hidden = versions(attribute=' __attribute__((visibility("hidden")))')
    pushed = versions(extra='#pragma GCC visibility push(hidden)\nint later(void);\n#pragma GCC visibility pop')
    declared = versions(extra='int later(void);')
    assert len({plain["build_id"], hidden["build_id"], pushed["build_id"], declared["build_id"]}) == 4


def test_a_changed_main_is_refused_and_can_be_accepted_as_staying_old(versions):
    old, new = versions(), versions(main="1", local=" int c;")
    assert refusals(old, new) == [
        "t.c:7: entry-point: main: changed, but the entry point is running and cannot be "
        "replaced; if accepted, it stays at its old version (to accept: PSU_ACCEPT=['stale:main'])"]
    change_set = changes.compare(old, new, accept=["stale:main"])
    assert change_set.replaced == {"use": "t.c"}
    assert [str(r).split(": ")[1] for r in change_set.accepted] == ["entry-point"]


def test_many_changes_outside_the_dsu_units_are_one_line_accepted_by_unit_or_by_every_name(versions, tmp_path):
    old = versions()
    root = tmp_path / "changed-more"
    root.mkdir()
    global PLAIN
    saved = PLAIN
    try:
        PLAIN = PLAIN.replace("v + 1", "v + 2") + "int helper(void) { return 3; }\n"
        new = manifest_of(root)
    finally:
        PLAIN = saved
    assert refusals(old, new) == [
        "plain.c: outside-dsu: plain.c: definitions outside the DSU units (add it to PSU_UNITS to "
        "update them live): 1 changed (outside); 1 added (helper); if accepted, they stay at their old "
        "version (to accept: PSU_ACCEPT=['stale:plain.c'])"]
    for accept in (["stale:plain.c"], ["stale:outside", "stale:helper"]):
        with pytest.raises(NoChanges):     # accepted: nothing else changed
            changes.compare(old, new, accept=accept)
    assert len(refusals(old, new, accept=["stale:outside"])) == 1


def test_sizes_and_offsets_come_from_the_compiler(tmp_path):
    """The packed attribute is invisible to the parse, not to the compiler's answer."""
    from psu import buildconfig, typelayout
    (tmp_path / "t.c").write_text(
        "struct wide { char tag; long value; };\n"
        "struct packed { char tag; long value; } __attribute__((packed));\n"
        "typedef struct { int a : 3; int b; } bits;\n")
    config = buildconfig.BuildConfig(program="t", top=str(tmp_path), sources=["t.c"], dsu_units=["t.c"],
                               flags=["-O2"], work_dir=str(tmp_path / "work"))
    layouts = typelayout.measure_types(config, str(tmp_path), "t.c", {
        "struct wide": ["tag", "value"], "struct packed": ["tag", "value"], "bits": ["a", "b"]})
    assert layouts == {"struct wide": {"size": 16, "offsets": {"tag": 0, "value": 8}},
                       "struct packed": {"size": 9, "offsets": {"tag": 0, "value": 1}},
                       "bits": {"size": 8, "offsets": {"b": 4}}}     # no offset of a bit-field
    refusal = changes.Refusal("type", "t.h:1", "struct wide", "x added, layout changed; existing "
                              "state holds it: reached by 1 variable(s) (v)")
    assert str(changes.measured(refusal, layouts["struct wide"], layouts["struct packed"])) == (
        "t.h:1: type: struct wide: x added, layout changed (size 16 -> 9, offsets value 8 -> 1); "
        "existing state holds it: reached by 1 variable(s) (v)")


def test_helpers_only_main_calls_are_one_line_accepted_with_main(tmp_path):
    """A static helper called by name only from `main` (so left direct) cannot
    change live: it is reported once, under `main`, and stays old with it."""
    def version(n):
        root = tmp_path / f"m{n}"
        root.mkdir()
        (root / "m.c").write_text(
            f"static int banner(void) {{ return {n}; }}\n"
            f"static int usage(void) {{ return {n} + 1; }}\n"
            f"int work(int v) {{ return v * {n}; }}\n"
            "int main(int argc, char **argv) { (void)argv; return argc > 1 ? usage() : banner() + work(argc); }\n")
        return manifest.build("m", root.name, [frontend.analyse("m.c", "cc", ["-O2"], str(root))],
                              "cc", ["-O2"])
    old, new = version(1), version(2)
    assert refusals(old, new) == [
        "m.c:4: direct-unreachable: main: 2 changed function(s) only it calls (banner, usage) stay "
        "at their old version with it (it is running and is never replaced); if accepted, they "
        "stay old (to accept: PSU_ACCEPT=['stale:main'])"]
    change_set = changes.compare(old, new, accept=["stale:main"])
    assert change_set.replaced == {"work": "m.c"}

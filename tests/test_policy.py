"""Issue 13: the DSU policy's API (why each kind of function is direct), and
the change analysis's classify step (a status per function and variable), on
the corpus pair tests/corpus/policy/v1 -> v2."""
import json

import pytest

from projects import REPO
from psu import changes, frontend, manifest
from psu.changes import Status
from psu.errors import RefusedChanges, UsageError
from psu.policy import Direct, DsuPolicy

CORPUS = REPO / "tests" / "corpus" / "policy"


@pytest.fixture(scope="module")
def kinds():
    """The analysed unit of each version."""
    return {version: frontend.analyse("kinds.c", "cc", ["-O2"], str(CORPUS / version))
            for version in ("v1", "v2")}


def test_each_kind_of_direct_function_has_its_reason(kinds):
    policy = DsuPolicy(exclude=["kept_direct"])
    reasons = {f.name: policy.direct_reason(f) for f in kinds["v1"].functions}
    assert reasons == {
        "main": Direct.ENTRY_POINT,
        "psu_transform_counter": Direct.TRANSFORMER,
        "get_scale": Direct.MACRO_MADE,
        "inlined": Direct.INLINE,
        "kept_direct": Direct.EXCLUDED,
        "called_by_name": Direct.STATIC_CALLED_BY_NAME,
        "taken_later": Direct.STATIC_CALLED_BY_NAME,
        "exported": None, "address_taken": None, "becomes_inline": None, "dropped": None,
    }
    assert policy.dsu_names(kinds["v1"]) == {"exported", "address_taken", "becomes_inline", "dropped"}


def test_direct_statics_chooses_which_statics_stay_direct(kinds):
    by_name = {f.name: f for f in kinds["v1"].functions}
    called_by_name = by_name["called_by_name"]
    assert DsuPolicy(direct_statics="none").direct_reason(called_by_name) is None
    assert DsuPolicy(direct_statics=called_by_name.size).direct_reason(called_by_name) is None
    assert DsuPolicy(direct_statics=called_by_name.size + 1).direct_reason(called_by_name) \
        == Direct.STATIC_CALLED_BY_NAME
    # excluded by qualified name too; the settings are one value, equal by content
    assert DsuPolicy(exclude=["kinds.c:called_by_name"], direct_statics="none") \
        .direct_reason(called_by_name) == Direct.EXCLUDED
    assert DsuPolicy(["a"], "all") == DsuPolicy(("a",), "all")
    with pytest.raises(UsageError, match="PSU_DIRECT_STATICS='some': expected all, none"):
        DsuPolicy(direct_statics="some")


def test_the_manifest_records_the_reasons_and_reads_back_equal(kinds):
    plain = frontend.analyse("kinds.c", "cc", ["-O2"], str(CORPUS / "v2"), dsu=False)
    plain.path = "plain.c"
    built = manifest.build("kinds", "v1", [kinds["v1"], plain], "cc", ["-O2"],
                           DsuPolicy(exclude=["kept_direct"], direct_statics="none"))
    assert (built["exclude"], built["direct_statics"]) == (["kept_direct"], "none")
    read_back = json.loads(json.dumps(built))
    functions = read_back["units"]["kinds.c"]["functions"]
    assert functions["kept_direct"]["direct"] == Direct.EXCLUDED == "excluded"
    assert functions["kinds.c:called_by_name"]["direct"] is None
    assert {f["direct"] for f in read_back["units"]["plain.c"]["functions"].values()} == \
        {Direct.OUTSIDE_DSU_UNITS}
    assert manifest.build_id(read_back) == built["build_id"]


def test_classify_gives_each_function_and_variable_its_status(kinds):
    old, new = (manifest.build("kinds", version, [kinds[version]], "cc", ["-O2"])
                for version in ("v1", "v2"))
    units = changes.match(old, new)
    changes.classify(units)
    [unit] = units
    assert {e.qualname: e.status for e in unit.functions} == {
        "exported": Status.BODY_CHANGED,
        "kinds.c:address_taken": Status.SIGNATURE_CHANGED,
        "kinds.c:taken_later": Status.NOW_DSU,
        "becomes_inline": Status.DSU_STATUS_CHANGED,
        "dropped": Status.REMOVED,
        "fresh": Status.ADDED,
        "kinds.c:called_by_name": Status.SAME, "kinds.c:inlined": Status.SAME, "kept_direct": Status.SAME,
        "get_scale": Status.SAME, "main": Status.BODY_CHANGED,
        "psu_transform_counter": Status.BODY_CHANGED,     # it names counter, whose type changed
    }
    assert {e.qualname: e.status for e in unit.variables} == {
        "kinds.c:counter": Status.TYPE_CHANGED,
        "kinds.c:scale": Status.INIT_CHANGED,
        "kinds.c:gone": Status.REMOVED,
        "kinds.c:fresh_state": Status.ADDED,
        "later": Status.ADDED,
        "pointer": Status.TYPE_CHANGED,
        "steady": Status.SAME,
    }
    # the function direct before comes in as an added one, and its callers with it
    assert unit.changed_direct == {"taken_later"}


def test_refuse_and_plan_follow_the_statuses(kinds):
    old, new = (manifest.build("kinds", version, [kinds[version]], "cc", ["-O2"])
                for version in ("v1", "v2"))
    with pytest.raises(RefusedChanges) as refused:
        changes.compare(old, new)
    assert sorted((r.kind, r.what) for r in refused.value.refusals) == [
        ("dsu-status", "becomes_inline"), ("entry-point", "main"),
        ("signature", "kinds.c:address_taken"), ("state-init", "kinds.c:scale"),
        ("state-type", "pointer")]
    plan = refused.value.change_set
    assert (plan.replaced, plan.added, plan.removed) == (
        {"exported": "kinds.c"}, {"fresh": "kinds.c", "kinds.c:taken_later": "kinds.c"},
        {"dropped": "kinds.c"})
    assert plan.transformed["kinds.c:counter"]["transformer"] == "psu_transform_counter"
    assert sorted(plan.added_variables) == ["kinds.c:counter", "kinds.c:fresh_state", "later"]
    assert sorted(plan.bound) == ["kinds.c:scale", "steady"]


def test_calls_written_before_the_policy_module_mean_the_same_policy(kinds, tmp_path):
    """TEMPORARY (policy.legacy): the call forms of branches written before
    DsuPolicy still work while they merge."""
    from psu import build
    unit = kinds["v1"]
    assert manifest.dsu_names(unit, ["kept_direct"], "none") == \
        DsuPolicy(["kept_direct"], "none").dsu_names(unit)
    assert manifest.build("k", "v1", [unit], "cc", ["-O2"], ["kept_direct"], "none") == \
        manifest.build("k", "v1", [unit], "cc", ["-O2"], DsuPolicy(["kept_direct"], "none"))
    (tmp_path / "kinds.json").write_text(json.dumps(unit.to_json()))
    for policy, settings in ((DsuPolicy(["kept_direct"], "none"), {}),
                             (["kept_direct"], {"direct_statics": "none"})):
        output = tmp_path / f"kinds-{len(settings)}.psu.c"
        build.generate_unit(str(tmp_path / "kinds.json"), str(CORPUS / "v1" / "kinds.c"), policy,
                            str(output), output_name="kinds.psu.c", **settings)
    assert (tmp_path / "kinds-0.psu.c").read_text() == (tmp_path / "kinds-1.psu.c").read_text()

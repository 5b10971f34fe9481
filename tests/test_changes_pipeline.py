"""Issue 13: change analysis as its steps, on the corpus pair
tests/corpus/policy/v1 -> v2, which changes a function or variable in every
way `classify` tells apart: the status of each, and what `refuse` and `plan`
make of them."""
import pytest

from projects import REPO
from psu import changes, frontend, manifest
from psu.changes import Status
from psu.errors import RefusedChanges

CORPUS = REPO / "tests" / "corpus" / "policy"


@pytest.fixture(scope="module")
def versions():
    """The manifests of v1 and v2 (default policy)."""
    return [manifest.build("kinds", version, [frontend.analyse("kinds.c", "cc", ["-O2"],
                                                                 str(CORPUS / version))],
                           "cc", ["-O2"])
            for version in ("v1", "v2")]


def test_classify_gives_each_function_and_variable_its_status(versions):
    units = changes.match(*versions)
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


def test_refuse_and_plan_follow_the_statuses(versions):
    with pytest.raises(RefusedChanges) as refused:
        changes.compare(*versions)
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

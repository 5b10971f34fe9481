"""Issue 13: the DSU policy's API -- why each kind of function is direct --
on tests/corpus/policy/v1 (test_changes_pipeline.py classifies v1 -> v2)."""
import json

import pytest

from projects import REPO
from psu import frontend, manifest
from psu.errors import UsageError
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

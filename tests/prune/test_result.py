"""PruneResult: the typed result of every method, readable as its flat report."""

from prunekit.prune.result import PruneResult


def test_the_report_holds_the_typed_fields_under_the_shared_keys():
    result = PruneResult(requested=0.5, achieved=0.49, layers={"a": {"requested": 0.5, "actual": 0.49}},
                         plan=[{"group": "a"}], details={"prune_seconds": 1.5})
    assert result.report() == {"layers": {"a": {"requested": 0.5, "actual": 0.49}}, "plan": [{"group": "a"}],
                               "prune_seconds": 1.5, "requested_sparsity": 0.5, "actual_sparsity": 0.49}
    assert "plan" not in result.report(with_plan=False)
    assert dict(result) == result.report() and result["actual_sparsity"] == 0.49 and len(result) == 5


def test_a_mask_only_result_has_no_plan_key_and_details_cannot_shadow_the_amounts():
    result = PruneResult(requested=0.3, achieved=0.3, layers={}, details={"actual_sparsity": 0.9})
    assert "plan" not in result
    assert result["actual_sparsity"] == 0.3

"""Contract of every unit criterion of llm-structured pruning, read from the registry (prunekit list unit-criteria):
scores of the right shape, finite and deterministic, the requested ratio reached, GLU-only criteria confined to
the MLP, and an unknown name refused with the valid ones."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.importance.unit_criteria import UNIT_CRITERIA
from prunekit.prune.llm_structured import LLMStructuredConfig, group_scores, prunable_groups, prune_llm_structured
from prunekit.testing import tiny_loaded

NAMES = UNIT_CRITERIA.names()
WINDOWS = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))


def _scores(name: str) -> tuple[dict, list]:
    from prunekit.prune.inputs import NO_INPUTS
    from prunekit.prune.llm_structured import calibration_statistics

    loaded = tiny_loaded("llama", layers=2, vocab=256, seed=0)
    config = LLMStructuredConfig(ratio=0.3, criterion=name)
    graph, kinds, groups, outputs = prunable_groups(loaded.model, loaded.adapter, config)
    _windows, stats = calibration_statistics(loaded, config, NO_INPUTS, WINDOWS, outputs)
    return group_scores(graph, groups, kinds, outputs, stats, name), groups


@pytest.mark.parametrize("name", NAMES)
def test_scores_one_finite_value_per_unit_and_repeat_exactly(name):
    first, groups = _scores(name)
    again, _ = _scores(name)
    assert set(first) == {g.name for g in groups}
    for g in groups:
        assert first[g.name].shape == (g.size,) and first[g.name].dtype == torch.float64
        assert torch.isfinite(first[g.name]).all()
        assert torch.equal(first[g.name], again[g.name])


@pytest.mark.parametrize("name", NAMES)
def test_reaches_the_ratio_in_the_scope_it_declares(name):
    loaded = tiny_loaded("llama", layers=4, vocab=256, seed=0)
    report = prune_llm_structured(loaded, LLMStructuredConfig(ratio=0.3, criterion=name), method="llm-structured",
                                  windows=WINDOWS)
    assert abs(report["achieved"] - 0.3) <= 0.02, report["achieved"]
    heads = [v for v in report["layers"].values() if v["kind"] == "heads"]
    if UNIT_CRITERIA.load(name).glu:
        assert not heads or all(v["after"] == v["before"] for v in heads)
    else:
        assert heads and any(v["after"] < v["before"] for v in heads)


def test_an_unknown_criterion_names_the_registered_ones():
    with pytest.raises(ConfigError, match=f"Unknown criterion 'wifv'. Valid choices: {', '.join(NAMES)}"):
        LLMStructuredConfig(criterion="wifv")

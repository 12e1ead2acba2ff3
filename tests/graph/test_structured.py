"""Structured pruning glue: config errors, criteria, allocation targets, plans."""

import copy
import json

import pytest
import torch
from graph_nets import all_nets
from torch import nn

from prunekit.errors import ConfigError
from prunekit.graph import DependencyGraph
from prunekit.graph.plan import apply_plan
from prunekit.importance.group_norm import group_norm_scores
from prunekit.importance.taylor import accumulate_gradients, causal_lm_loss, taylor_scores
from prunekit.models import LoadedModel
from prunekit.prune.structured import StructuredPruneConfig, criterion_of, prune_structured, score_groups
from prunekit.testing import tiny_loaded

IDS = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("options,message", [
    ({"ratio": 1.0}, "ratio must be in \\[0, 1\\), got 1.0"),
    ({"ratio": -0.1}, "got -0.1"),
    ({"target": "flops"}, "Unknown target 'flops'. Valid choices: channels, params, macs"),
    ({"scope": ["mlpp"]}, "scope must be a non-empty list of mlp, heads, channels; got \\['mlpp'\\]"),
    ({"allocation": "owl"}, "Unknown allocation 'owl'. Valid choices: uniform, global"),
    ({"max_layer_ratio": 0.0}, "max_layer_ratio must be in \\(0, 1\\], got 0.0"),
    ({"head_mode": "groups"}, "Unknown head_mode 'groups'"),
    ({"round_to": 0}, "round_to and batch_size must be >= 1"),
])
def test_bad_options_name_the_value_and_the_choices(options, message):
    with pytest.raises(ConfigError, match=message):
        StructuredPruneConfig(**options)


def test_method_names():
    assert criterion_of("structured-l1") == criterion_of("l1") == "l1"
    with pytest.raises(ConfigError, match="Unknown structured criterion 'l3'. Valid choices: l1, l2, taylor, random"):
        criterion_of("l3")


def test_group_norm_sums_over_every_coupled_slice():
    up = torch.tensor([[1.0, -2.0], [3.0, 0.0], [0.0, 4.0]])  # (3 units, in 2): row u belongs to unit u
    down = torch.tensor([[1.0, 0.0, 2.0]])  # (out 1, 3 units): column u belongs to unit u
    unit = torch.arange(3)
    slices = [(up, 0, unit), (down, 1, unit)]
    torch.testing.assert_close(group_norm_scores(slices, 3, p=1), torch.tensor([4.0, 3.0, 6.0]))
    torch.testing.assert_close(group_norm_scores(slices, 3, p=2), torch.tensor([6.0, 9.0, 20.0]).sqrt())
    masked = group_norm_scores([(up, 0, torch.tensor([0, -1, 0]))], 3, p=1)
    torch.testing.assert_close(masked, torch.tensor([7.0, 0.0, 0.0]))


@pytest.mark.parametrize("name", ["residual", "concat", "grouped", "conv1d_glu"])
def test_norm_scores_of_all_units_at_once_equal_each_groups_own(name):
    model, x = all_nets()[name]
    graph = DependencyGraph.build(model, x)
    config = StructuredPruneConfig(ratio=0.5, scope=["channels", "heads", "mlp"])
    for criterion, p in (("l1", 1), ("l2", 2)):
        every = score_groups(graph, graph.groups, criterion, None, config, None, None, None)
        for g in graph.groups:
            own = group_norm_scores([(td.tensor, td.dim, pos) for td, pos in graph.param_slices(g)], g.size, p)
            alone = score_groups(graph, [g], criterion, None, config, None, None, None)
            assert torch.equal(every[g.name], own) and torch.equal(alone[g.name], own), (criterion, g.name)


def test_taylor_is_weight_times_gradient_summed_per_unit():
    w, g = torch.tensor([[1.0, 2.0], [-3.0, 1.0]]), torch.tensor([[0.5, -1.0], [1.0, 4.0]])
    torch.testing.assert_close(taylor_scores([(w, g, 0, torch.tensor([1, 0]))], 2), torch.tensor([7.0, 2.5]))


def test_taylor_through_the_glue_matches_a_manual_gradient():
    loaded = tiny_loaded("llama")
    reference = copy.deepcopy(loaded.model)
    batches = [IDS]
    report = prune_structured(loaded, StructuredPruneConfig(ratio=0.25, scope=["mlp"]), method="taylor",
                              batches=batches)
    mlp = reference.model.layers[0].mlp
    grads = accumulate_gradients(reference, batches, causal_lm_loss)
    score = sum((p.detach() * grads[id(p)]).abs().sum(dim) for p, dim in
                ((mlp.gate_proj.weight, 1), (mlp.up_proj.weight, 1), (mlp.down_proj.weight, 0)))  # (128,)
    pruned = report["plan"][0]["pruned"]
    assert report["plan"][0]["group"] == "model.layers.0.mlp.gate_proj:out"
    assert sorted(pruned) == sorted(torch.argsort(score)[:32].tolist())
    with pytest.raises(ConfigError, match="taylor needs calibration data"):
        prune_structured(tiny_loaded("llama"), StructuredPruneConfig(), method="taylor")


def test_random_is_reproducible_and_differs_from_l2():
    plans = [prune_structured(tiny_loaded("llama"), StructuredPruneConfig(ratio=0.5, scope=["mlp"]),
                              method=m)["plan"] for m in ("random", "random", "l2")]
    assert plans[0] == plans[1] and plans[0] != plans[2]


@pytest.mark.parametrize("target", ["params", "macs"])
@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_parameter_and_mac_targets_are_reached(target, allocation):
    loaded = tiny_loaded("llama", layers=3)
    config = StructuredPruneConfig(ratio=0.2, target=target, allocation=allocation, scope=["mlp"])
    report = prune_structured(loaded, config, method="l1")
    removed = 1 - report[f"{target}_after"] / report[f"{target}_before"]
    assert removed == pytest.approx(report["achieved"], abs=1e-6)
    assert 0.2 <= removed < 0.21  # MLP units are fine-grained: the smallest step that reaches the target


def test_global_allocation_respects_the_layer_ceiling_and_round_to():
    loaded = tiny_loaded("llama", layers=3)
    mlp = loaded.model.model.layers[0].mlp
    with torch.no_grad():  # 100 weak neurons in layer 0: a global ranking takes them first, up to the ceiling
        for w in (mlp.gate_proj.weight[:100], mlp.up_proj.weight[:100], mlp.down_proj.weight[:, :100]):
            w.mul_(0.01)
    config = StructuredPruneConfig(ratio=0.5, allocation="global", max_layer_ratio=0.6, round_to=8, scope=["mlp"])
    report = prune_structured(loaded, config, method="l2")
    afters = [v["after"] for v in report["layers"].values()]
    assert afters[0] == 56  # at most floor(0.6 * 128) = 76 removed -> 52 kept, rounded up to a multiple of 8
    assert all(a % 8 == 0 for a in afters) and afters[1] > 56 and afters[2] > 56
    assert sum(128 - a for a in afters) >= 0.5 * 3 * 128
    with pytest.raises(ConfigError, match="cannot be reached.*at most"):
        prune_structured(tiny_loaded("llama"), StructuredPruneConfig(ratio=0.95, target="params", scope=["mlp"]),
                         method="l2")


def test_plan_is_json_and_replays_on_a_fresh_model():
    loaded = tiny_loaded("qwen2")
    fresh = copy.deepcopy(loaded.model)
    report = prune_structured(loaded, StructuredPruneConfig(ratio=0.3, head_mode="q"), method="l2")
    plan = json.loads(json.dumps(report["plan"]))
    assert {e["kind"] for e in plan} == {"mlp", "heads"}
    apply_plan(fresh, plan)
    torch.testing.assert_close(fresh(input_ids=IDS).logits, loaded.model(input_ids=IDS).logits, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"has \d+ units in this model but the plan was made for \d+"):
        apply_plan(fresh, plan)


def test_no_group_in_scope_is_an_error():
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    loaded = LoadedModel(cnn, None, None, "cnn")
    with pytest.raises(ConfigError, match=r"No prunable groups of kinds \['mlp', 'heads'\].*it has: channels"):
        prune_structured(loaded, StructuredPruneConfig(), method="l2", example_inputs=torch.randn(1, 3, 8, 8))
    report = prune_structured(loaded, StructuredPruneConfig(ratio=0.5, scope=["channels"]), method="l1",
                              example_inputs=torch.randn(1, 3, 8, 8))
    assert cnn[0].out_channels == 4 and report["layers"]["0:out"] == {**report["layers"]["0:out"], "after": 4}
    assert DependencyGraph.build(cnn, torch.randn(1, 3, 8, 8)).estimate({})["macs"] == report["macs_after"]


def test_round_to_rounds_channels_not_heads():
    report = prune_structured(tiny_loaded("llama"), StructuredPruneConfig(ratio=0.25, round_to=16), method="l2")
    afters = {v["kind"]: v["after"] for v in report["layers"].values()}
    assert afters == {"mlp": 96, "heads": 1}


def test_recipe_options_and_taylor_on_the_run_calibration(tmp_path):
    from prunekit.core.typed import from_dict
    from prunekit.pipeline import RunContext
    from prunekit.recipe import parse_recipe
    from prunekit.testing import CharTokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"sample text number {i} with some words " * 6 for i in range(300)))
    config = from_dict(StructuredPruneConfig, {"ratio": 0.25, "scope": ["mlp"], "batch_size": 2}, "prune")
    with pytest.raises(ConfigError, match="scope"):
        from_dict(StructuredPruneConfig, {"scope": "mlp"}, "prune")
    loaded = tiny_loaded("llama")
    loaded.tokenizer = CharTokenizer()
    ctx = RunContext(parse_recipe({"calibration": {"corpus": str(corpus), "samples": 4, "seq_len": 16}}), None)
    report = prune_structured(loaded, config, ctx.inputs(), method="structured-taylor")
    assert report["criterion"] == "taylor" and all(v["after"] == 96 for v in report["layers"].values())

"""Retraining-free LLM width pruning: FLAP, GLU width criteria, angular allocation, bias compensation, refit."""

import pytest
import torch
from torch import nn

from prunekit.allocate.block_importance import angular_distance, block_angular_importance, keep_ratios
from prunekit.calib.fluctuation import FluctuationCollector
from prunekit.errors import ConfigError
from prunekit.importance.flap import bias_compensation, standardize, unit_scores, wifv_scores
from prunekit.importance.glu_width import maw_scores, pon_scores, vow_scores
from prunekit.io.save import save_model
from prunekit.models import load
from prunekit.pipeline import RunContext
from prunekit.prune.llm_structured import LLMStructuredConfig, prune_llm_structured
from prunekit.prune.refit import reconstruction_error, refit_columns
from prunekit.prune.unit_allocation import non_embedding_params
from prunekit.recipe import parse_recipe
from prunekit.testing import CharTokenizer, tiny_loaded, tiny_model

torch.set_num_threads(1)


def windows(n=4, t=16, seed=1):
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


def test_fluctuation_collector_matches_batch_statistics():
    x = torch.randn(5, 7, 6, generator=torch.Generator().manual_seed(0))
    c = FluctuationCollector()
    for part in (x[:2], x[2:3], x[3:]):
        c.add_batch(part)
    flat = x.reshape(-1, 6)
    assert c.n_tokens == 35
    torch.testing.assert_close(c.mean, flat.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(c.variance, flat.var(0, unbiased=False), atol=1e-6, rtol=0)


def test_flap_scores_match_hand_computation():
    weight = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]])  # (out 2, in 3)
    variance = torch.tensor([0.5, 2.0, 3.0])
    s = wifv_scores(weight, variance)
    assert s.tolist() == [0.5 * (1 + 9), 2.0 * (4 + 16), 3.0 * (0 + 1)]  # 5, 40, 3
    assert unit_scores(s, torch.tensor([0, 0, 1]), 2).tolist() == [45.0, 3.0]  # a head sums its channels
    a, b = standardize([torch.tensor([1.0, 3.0]), torch.tensor([5.0])])
    mean, std = 3.0, torch.tensor([1.0, 3.0, 5.0]).std().item()
    torch.testing.assert_close(torch.cat([a, b]).float(), (torch.tensor([1.0, 3.0, 5.0]) - mean) / std)


def test_glu_width_criteria_match_hand_computation():
    gate = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    up = torch.tensor([[3.0, -1.0], [-4.0, 1.0]])
    assert maw_scores(gate, up).tolist() == [3 + 2, 1 + 4]
    assert pon_scores(gate, up).tolist() == [3 * 4, 1 * 5]
    torch.testing.assert_close(vow_scores(gate, up), torch.tensor([14.75 / 4, 16.5 / 4], dtype=torch.float64))


def test_bias_compensation_is_exact_when_removed_inputs_are_constant():
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(8, 5, bias=False)
    x = torch.randn(3, 10, 8, generator=g)
    removed = torch.tensor([1, 4, 6])
    x[..., removed] = torch.tensor([0.7, -1.3, 2.0])  # constant over tokens
    collector = FluctuationCollector()
    collector.add_batch(x[:1])
    collector.add_batch(x[1:])
    keep = torch.tensor([0, 2, 3, 5, 7])
    pruned = nn.Linear(5, 5, bias=True)
    with torch.no_grad():
        pruned.weight.copy_(layer.weight[:, keep])
        pruned.bias.copy_(bias_compensation(layer.weight, collector.mean, removed))
        torch.testing.assert_close(pruned(x[..., keep]), layer(x), atol=1e-5, rtol=0)
        assert not torch.allclose(x[..., keep] @ layer.weight[:, keep].T, layer(x), atol=1e-3)  # it was needed


def test_refit_lowers_reconstruction_error():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)
    x = torch.randn(400, 12, generator=g) @ mix + 0.5  # correlated inputs with a mean: (N, in)
    weight = torch.randn(6, 12, generator=g)
    gram, sums, n = x.T.double() @ x.double(), x.sum(0).double(), x.shape[0]
    keep = torch.tensor([0, 2, 3, 5, 8, 9, 11])
    plain = reconstruction_error(weight, weight[:, keep], keep, gram)
    w_keep, _ = refit_columns(weight, gram, keep, damp=1e-6)
    refit = reconstruction_error(weight, w_keep, keep, gram)
    w_b, c = refit_columns(weight, gram, keep, damp=1e-6, sums=sums, count=n)
    with_bias = reconstruction_error(weight, w_b, keep, gram, c, sums, n)
    assert with_bias <= refit < 0.8 * plain
    direct = ((x @ weight.T) - (x[:, keep] @ w_b.T + c)).double().square().sum().item()
    assert abs(direct - with_bias) / direct < 1e-4  # the Gram formula is the real error


def test_angular_distance_of_an_identity_block_is_zero():
    h = torch.randn(2, 5, 16)
    assert angular_distance(h, h).abs().max() < 1e-6
    assert abs(angular_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() - 0.5) < 1e-9

    class Identity(nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states

    model = tiny_model("llama", layers=3)
    model.model.layers[1] = Identity()
    importance = block_angular_importance(model, model.model.layers, windows(), batch_size=2)
    assert importance[1] < 1e-6 and importance[0] > 1e-3 and importance[2] > 1e-3


def test_keep_ratios_are_exact_clipped_and_ordered():
    imp = torch.tensor([0.1, 0.5, 0.2, 3.0])
    w = torch.tensor([1.0, 2.0, 1.0, 1.0])
    keep = keep_ratios(imp, 0.6, w, low=0.2, high=1.0)
    assert abs(float((keep * w).sum() / w.sum()) - 0.6) < 1e-6
    assert keep.min() >= 0.2 - 1e-7 and keep.max() <= 1.0 + 1e-7 and keep[3] == 1.0
    assert keep[0] <= keep[2] <= keep[1] <= keep[3]


@pytest.mark.parametrize("criterion,allocation,refit", [
    ("flap", "global", False), ("flap", "angular", True), ("maw", "uniform", False), ("vow", "global", False),
    ("pon", "angular", False), ("l2", "uniform", True),
])
def test_parameter_ratio_is_reached_and_model_runs(criterion, allocation, refit):
    loaded = tiny_loaded("llama", layers=3)
    nonembed = non_embedding_params(loaded)
    config = LLMStructuredConfig(ratio=0.3, criterion=criterion, allocation=allocation, refit=refit,
                                 bias_compensation=False)
    report = prune_llm_structured(loaded, config, method="llm-structured", windows=windows())
    assert abs(report["achieved"] - 0.3) < 0.01
    assert abs((nonembed - non_embedding_params(loaded)) / nonembed - 0.3) < 0.01  # counted on the model itself
    assert set(report["layers"]) and all({"requested", "actual", "params"} <= set(v) for v in report["layers"].values())
    assert torch.isfinite(loaded.model(windows()).logits).all()


def test_maw_keeps_the_highest_scoring_neurons():
    loaded = tiny_loaded("llama", layers=2)
    mlp = loaded.model.model.layers[0].mlp
    gate, up = mlp.gate_proj.weight.detach().clone(), mlp.up_proj.weight.detach().clone()
    config = LLMStructuredConfig(ratio=0.2, criterion="maw", allocation="uniform", bias_compensation=False)
    prune_llm_structured(loaded, config, method="llm-structured")  # data-free: no windows needed
    kept = mlp.gate_proj.weight.shape[0]
    top = torch.sort(torch.argsort(maw_scores(gate, up), descending=True)[:kept]).values
    torch.testing.assert_close(mlp.gate_proj.weight, gate[top])
    torch.testing.assert_close(mlp.up_proj.weight, up[top])


def test_flap_with_bias_compensation_saves_and_reloads(tmp_path):
    loaded = tiny_loaded("llama", layers=2)
    config = LLMStructuredConfig(ratio=0.25, criterion="flap", allocation="global", bias_compensation=True)
    report = prune_llm_structured(loaded, config, method="llm-structured", windows=windows())
    model = loaded.model
    assert report["bias_carried"] and model.config.attention_bias and model.config.mlp_bias
    assert model.model.layers[0].mlp.down_proj.bias.abs().sum() > 0
    ids = windows(2, 12, seed=3)
    with torch.no_grad():
        expected = model(ids).logits
    save_model(loaded, tmp_path / "m", plan=report)
    again = load(str(tmp_path / "m"))
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, expected, atol=1e-5, rtol=0)


def test_bias_compensation_helps_on_real_calibration_statistics(llm_output_error):
    ids = windows(8, 24, seed=5)
    errs = {comp: llm_output_error(LLMStructuredConfig(ratio=0.3, criterion="flap", bias_compensation=comp), ids)[1]
            for comp in (False, True)}
    assert errs[True] < errs[False]


def test_runs_from_a_recipe_context_and_validates_config(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(f"sample text number {i} with some words " * 6 for i in range(100)))
    loaded = load(tiny_model("llama", vocab=128))
    loaded.tokenizer = CharTokenizer()
    ctx = RunContext(parse_recipe({"calibration": {"corpus": str(path), "samples": 4, "seq_len": 32}}), None)
    report = prune_llm_structured(loaded, LLMStructuredConfig(ratio=0.2), ctx.inputs(), method="llm-structured")
    assert abs(report["achieved"] - 0.2) < 0.01
    with pytest.raises(ConfigError):
        LLMStructuredConfig(criterion="maw", scope=["heads"])
    with pytest.raises(ConfigError):
        LLMStructuredConfig(allocation="owl")


def test_refit_in_the_glue_lowers_the_output_error(llm_output_error):
    ids = windows(8, 24, seed=7)
    errs = {refit: llm_output_error(LLMStructuredConfig(ratio=0.3, criterion="flap", bias_compensation=True,
                                                        refit=refit, damp=1e-3), ids)[1]
            for refit in (False, True)}
    assert errs[True] < errs[False]


def test_bias_that_the_config_cannot_carry_is_flagged():
    loaded = tiny_loaded("qwen2", layers=2)
    with pytest.warns(UserWarning, match="cannot express biases"):
        report = prune_llm_structured(loaded, LLMStructuredConfig(ratio=0.3), method="llm-structured",
                                      windows=windows())
    assert report["bias_carried"] is False
    assert loaded.model.model.layers[0].mlp.down_proj.bias is not None  # still applied in memory

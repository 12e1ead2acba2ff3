"""CFSP channel score (paper form and the code's activation-norm reduction) and COMP-style scale tuning."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.importance.cfsp import activation_norm_scores, cfsp_scores, relative_importance
from prunekit.prune.llm_structured import LLMStructuredConfig, prune_llm_structured
from prunekit.prune.refit import reconstruction_error
from prunekit.prune.scale_tuning import tune_scales
from prunekit.prune.unit_allocation import non_embedding_params
from prunekit.testing import tiny_loaded

torch.set_num_threads(1)


def test_relative_importance_by_hand():
    m = torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64)
    expected = torch.tensor([[1 / 4 + 1 / 3, 3 / 4 + 3 / 5], [2 / 4 + 2 / 3, 2 / 4 + 2 / 5]], dtype=torch.float64)
    torch.testing.assert_close(relative_importance(m), expected)


def test_cfsp_score_by_hand_and_code_reduction():
    g = torch.Generator().manual_seed(0)
    down, up, gate = torch.randn(3, 4, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    norm = torch.rand(4, generator=g) + 0.5
    expected = torch.zeros(4, dtype=torch.float64)
    d, u, gt, a = down.double().abs(), up.double().abs().T, gate.double().abs().T, norm.double()
    for j in range(4):
        total = 0.0
        for i in range(3):
            da = d * a  # (3, 4) |W_down| A
            total += da[i, j] / da[i].sum() + da[i, j] / da[:, j].sum()
            total += u[i, j] / u[i].sum() + u[i, j] / u[:, j].sum()
            total += gt[i, j] / gt[i].sum() + gt[i, j] / gt[:, j].sum()
        expected[j] = a[j] * total
    torch.testing.assert_close(cfsp_scores(down, up, gate, norm), expected)
    # The code's column normalisation alone sums to 1 per column: the score is then 3 * A_j, the act-norm ranking.
    col_only = sum((m / m.sum(0, keepdim=True)).sum(0) for m in (d * a, u, gt)) * a
    torch.testing.assert_close(col_only, 3 * activation_norm_scores(norm))
    with pytest.raises(ValueError, match="GLU"):
        cfsp_scores(down, up[:3], gate, norm)


def _data(seed=0, n=500, d=10, out=5):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 0.7).double()  # (N, in), mean != 0
    weight = torch.randn(out, d, generator=g).double()
    return x, weight


def test_scale_tuning_solves_the_least_squares_problem():
    x, weight = _data()
    keep = torch.tensor([0, 1, 3, 4, 6, 9])
    gram = x.T @ x
    scales, _ = tune_scales(weight, gram, keep, damp=0.0)
    # Direct least squares on the design [a_j x_j] (N*out, k).
    a = weight[:, keep]
    design = torch.stack([(x[:, j:j + 1] * a[:, i][None]).reshape(-1) for i, j in enumerate(keep.tolist())], dim=1)
    target = (x @ weight.T).reshape(-1)
    direct = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    torch.testing.assert_close(scales, direct, rtol=1e-6, atol=1e-8)
    plain = reconstruction_error(weight, a, keep, gram)
    tuned = reconstruction_error(weight, a * scales, keep, gram)
    assert tuned < plain
    # With an intercept: never worse, and the Gram formula agrees with the direct error.
    s_b, c = tune_scales(weight, gram, keep, damp=0.0, mean=x.mean(0), count=x.shape[0])
    with_bias = ((x @ weight.T) - (x[:, keep] @ (a * s_b).T + c)).square().sum().item()
    assert with_bias <= tuned + 1e-9
    # A huge ridge keeps the scales at 1 (no change).
    torch.testing.assert_close(tune_scales(weight, gram, keep, damp=1e9)[0], torch.ones(6, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def windows(n=8, t=24, seed=7):
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("criterion", ["cfsp", "act-norm"])
def test_cfsp_criteria_reach_the_ratio_on_mlp_only(criterion):
    loaded = tiny_loaded("llama", layers=2)
    heads = loaded.model.model.layers[0].self_attn.o_proj.weight.shape[1]
    nonembed = non_embedding_params(loaded)
    config = LLMStructuredConfig(ratio=0.2, criterion=criterion, bias_compensation=False)
    report = prune_llm_structured(loaded, config, method="llm-structured", windows=windows())
    assert abs((nonembed - non_embedding_params(loaded)) / nonembed - 0.2) < 0.01
    assert loaded.model.model.layers[0].self_attn.o_proj.weight.shape[1] == heads  # heads untouched
    assert {v["kind"] for v in report["layers"].values()} == {"mlp"}
    with pytest.raises(ConfigError, match="GLU neurons only"):
        LLMStructuredConfig(criterion=criterion, scope=["heads"])


def test_scale_tuning_lowers_the_output_error_in_the_model(llm_output_error):
    ids = windows()
    errs = {}
    for tuning in (False, True):
        config = LLMStructuredConfig(ratio=0.3, criterion="flap", bias_compensation=True, scale_tuning=tuning,
                                     damp=1e-3)
        report, errs[tuning] = llm_output_error(config, ids)
        assert report["scale_tuning"] is tuning
    assert errs[True] < errs[False]
    with pytest.raises(ConfigError, match="exclude each other"):
        LLMStructuredConfig(refit=True, scale_tuning=True)

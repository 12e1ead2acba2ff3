"""Allocators: uniform, global threshold, OWL, rate-distortion DP."""

import itertools

import pytest
import torch

from prunekit.allocate.global_threshold import global_threshold_masks, ratios_from_masks
from prunekit.allocate.owl import outlier_ratio, owl_ratios, owl_ratios_from_outliers
from prunekit.allocate.rd import rd_grid_solution, rd_ratios
from prunekit.allocate.uniform import uniform_ratios
from prunekit.core.patterns import unstructured_keep_mask


def test_uniform():
    assert uniform_ratios(["a", "b"], 0.3) == {"a": 0.3, "b": 0.3}
    with pytest.raises(ValueError, match="1.0"):
        uniform_ratios(["a"], 1.0)
    with pytest.raises(ValueError, match="duplicates"):
        uniform_ratios(["a", "a"], 0.5)


# ---- global threshold -------------------------------------------------------------------------


def test_global_golden_and_exact():
    scores = {"a": torch.tensor([[0.1, 5.0], [0.2, 6.0]]), "b": torch.tensor([1.0, 2.0, 3.0, 0.05])}
    masks = global_threshold_masks(scores, 0.5)  # prune the 4 lowest: 0.05, 0.1, 0.2, 1.0
    assert torch.equal(masks["a"], torch.tensor([[False, True], [False, True]]))
    assert torch.equal(masks["b"], torch.tensor([False, True, True, False]))
    assert ratios_from_masks(masks) == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize("sparsity", [0.0, 0.33, 0.5, 0.77])
def test_global_exact_total_random(sparsity):
    torch.manual_seed(0)
    scores = {"a": torch.randn(7, 9).abs(), "b": torch.randn(13).abs() * 3, "c": torch.randn(4, 5, 6).abs()}
    masks = global_threshold_masks(scores, sparsity)
    total = sum(s.numel() for s in scores.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(sparsity * total)
    assert all(masks[k].shape == scores[k].shape for k in scores)


def test_global_ties_and_single_layer_equivalence():
    tie = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    masks = global_threshold_masks(tie, 0.5)  # 5 of 10 pruned, ties keep earlier weights
    assert torch.equal(masks["a"], torch.tensor([[True, True, True], [True, True, False]]))
    assert not masks["b"].any()
    torch.manual_seed(1)
    s = torch.randint(0, 5, (6, 10)).float()  # many ties
    assert torch.equal(global_threshold_masks({"x": s}, 0.45)["x"], unstructured_keep_mask(s, 0.45))


# ---- OWL ------------------------------------------------------------------------------------


def test_outlier_ratio_hand():
    # mean = (1*9 + 100) / 10 = 10.9; M=5 -> threshold 54.5: only 100 is an outlier
    assert outlier_ratio([torch.ones(3, 3), torch.tensor([100.0])], M=5.0) == pytest.approx(0.1)
    assert outlier_ratio([torch.ones(4)], M=5.0) == 0.0


@pytest.mark.parametrize("target,lam", [(0.5, 0.08), (0.7, 0.1), (0.05, 0.08), (0.95, 0.08)])
def test_owl_mean_band_and_order(target, lam):
    D = {"b0": 0.01, "b1": 0.05, "b2": 0.02, "b3": 0.0, "b4": 0.03}
    params = {"b0": 100, "b1": 300, "b2": 100, "b3": 500, "b4": 250}
    r = owl_ratios_from_outliers(D, params, target, lam)
    mean = sum(r[k] * params[k] for k in r) / sum(params.values())
    assert mean == pytest.approx(target, abs=1e-6)
    lo, hi = max(0.0, target - lam), min(target + lam, 1.0)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 and v < 1.0 for v in r.values())
    by_outliers = sorted(D, key=D.get)  # more outliers -> lower (or equal) sparsity
    ratios = [r[k] for k in by_outliers]
    assert all(a >= b - 1e-12 for a, b in zip(ratios, ratios[1:], strict=False))
    assert r["b3"] > r["b1"]


def test_owl_from_scores_and_uniform_cases():
    torch.manual_seed(2)
    calm = [torch.rand(8, 16), torch.rand(16, 8)]
    spiky = [torch.rand(8, 16), torch.rand(16, 8)]
    spiky[0][0, :6] = 50.0
    r = owl_ratios({"calm": calm, "spiky": spiky}, {"calm": 256, "spiky": 256}, 0.6)
    assert r["spiky"] < 0.6 < r["calm"] and r["calm"] + r["spiky"] == pytest.approx(1.2)
    same = owl_ratios_from_outliers({"a": 0.1, "b": 0.1}, {"a": 1, "b": 3}, 0.5)
    assert same == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="param_counts"):
        owl_ratios_from_outliers({"a": 0.1}, {"b": 1}, 0.5)
    with pytest.raises(ValueError, match="1.2"):
        owl_ratios_from_outliers({"a": 0.1}, {"a": 1}, 1.2)


# ---- rate-distortion --------------------------------------------------------------------------


def _toy_rd(seed: int):
    g = torch.Generator().manual_seed(seed)
    amounts = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    params = {"l0": 40, "l1": 60, "l2": 100}
    curves = {k: torch.cumsum(torch.rand(5, generator=g, dtype=torch.float64) * s, 0) - 0.0
              for k, s in zip(params, (1.0, 3.0, 0.5), strict=True)}
    curves = {k: c - c[0] for k, c in curves.items()}
    return curves, amounts, params


def _brute_force(curves, amounts, params, target):
    P = round(target * sum(params.values()))
    best = None
    for combo in itertools.product(range(len(amounts)), repeat=len(params)):
        pruned = sum(round(float(amounts[j]) * n) for j, n in zip(combo, params.values(), strict=True))
        if pruned >= P:
            d = sum(float(curves[k][j]) for k, j in zip(params, combo, strict=True))
            best = d if best is None else min(best, d)
    return best


@pytest.mark.parametrize("seed,target", [(0, 0.5), (1, 0.3), (2, 0.62), (3, 0.8), (4, 0.1)])
def test_rd_matches_brute_force_and_exact(seed, target):
    curves, amounts, params = _toy_rd(seed)
    grid = rd_grid_solution(curves, amounts, params, target)
    idx = {k: [float(a) for a in amounts].index(v) for k, v in grid.items()}
    d_dp = sum(float(curves[k][idx[k]]) for k in params)
    assert d_dp == pytest.approx(_brute_force(curves, amounts, params, target), abs=1e-12)
    ratios = rd_ratios(curves, amounts, params, target)
    assert sum(round(ratios[k] * n) for k, n in params.items()) == round(target * 200)
    assert all(0.0 <= v < 1.0 for v in ratios.values())


def test_rd_quantised_budget_exact_and_prefers_flat_layers():
    amounts = torch.linspace(0, 0.95, 20)
    params = {"flat": 1000, "steep": 3000, "mid": 5000, "odd": 777}
    curves = {"flat": amounts * 0.01, "steep": amounts**2 * 10, "mid": amounts**2, "odd": amounts}
    for target in (0.2, 0.5, 0.73):
        for resolution in (100, 10_000):  # unit = 98 weights, then 1 (exact DP)
            ratios = rd_ratios(curves, amounts, params, target, resolution=resolution)
            assert sum(round(ratios[k] * n) for k, n in params.items()) == round(target * 9777)
        assert ratios["flat"] >= ratios["mid"] >= ratios["steep"]


def test_rd_bad_input():
    curves, amounts, params = _toy_rd(0)
    with pytest.raises(ValueError, match="largest sparsity"):
        rd_ratios(curves, amounts, params, 0.95)
    with pytest.raises(ValueError, match="-0.1"):
        rd_ratios(curves, amounts, params, -0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        rd_ratios(curves, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), params, 0.2)
    with pytest.raises(ValueError, match="param_counts"):
        rd_ratios(curves, amounts, {"l0": 40}, 0.2)

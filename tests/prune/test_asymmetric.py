"""Asymmetric calibration (GPTAQ-style dense targets) for SparseGPT."""

import pytest
import torch

from prunekit.calib.collectors import CrossMomentCollector, HessianCollector
from prunekit.prune.asymmetric import dense_target_map
from prunekit.prune.sparsegpt import sparsegpt_prune


def _pair(seed=0, tokens=400, n_in=12, n_out=7):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(tokens, n_in, generator=g, dtype=torch.float64)
    pruned = dense + 0.3 * torch.randn(tokens, n_in, generator=g, dtype=torch.float64)  # drifted inputs
    weight = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
    return dense, pruned, weight


def dense_target_weight(weight, hessian, cross, **options):
    """W B: the weight SparseGPT prunes with dense targets."""
    return weight @ dense_target_map(hessian, cross, **options)


def test_cross_moment_matches_the_batch_formula_when_fed_in_chunks():
    dense, pruned, _ = _pair()
    collector = CrossMomentCollector(dtype=torch.float64)
    for start, stop in ((0, 150), (150, 275), (275, 400)):  # uneven chunks of (batch, tokens, in)
        collector.add_pair(dense[start:stop].reshape(5, -1, 12), pruned[start:stop].reshape(5, -1, 12))
    expected = 2.0 / 400 * dense.T @ pruned
    torch.testing.assert_close(collector._G, expected)


def test_dense_target_weight_is_the_least_squares_map_to_the_dense_outputs():
    dense, pruned, weight = _pair()
    hessian = 2.0 / 400 * pruned.T @ pruned
    cross = 2.0 / 400 * dense.T @ pruned
    fitted = dense_target_weight(weight, hessian, cross, damp=0.0)
    lstsq = torch.linalg.lstsq(pruned, dense @ weight.T).solution.T  # (out, in)
    torch.testing.assert_close(fitted, lstsq)
    # with identical inputs the map is the weight itself
    torch.testing.assert_close(dense_target_weight(weight, hessian, 2.0 / 400 * pruned.T @ pruned, damp=0.0), weight)


def test_pruning_the_refitted_weight_minimises_the_asymmetric_loss_exactly():
    dense, pruned, weight = _pair(seed=1)
    hessian = 2.0 / 400 * pruned.T @ pruned
    fitted = dense_target_weight(weight, hessian, 2.0 / 400 * dense.T @ pruned, damp=0.0)
    candidate = torch.randn_like(weight)
    total = (dense @ weight.T - pruned @ candidate.T).square().sum()
    split = (dense @ weight.T - pruned @ fitted.T).square().sum() + (pruned @ (fitted - candidate).T).square().sum()
    torch.testing.assert_close(total, split)
    # and SparseGPT on the refitted weight beats SparseGPT on the original weight on that loss
    h32 = HessianCollector(dtype=torch.float64)
    h32.add_batch(pruned)
    plain, _ = sparsegpt_prune(weight.float(), h32.result(), 0.5)
    asym, _ = sparsegpt_prune(fitted.float(), h32.result(), 0.5)
    loss = {name: (dense @ weight.T - pruned @ w.double().T).square().sum().item()
            for name, w in (("plain", plain), ("asym", asym))}
    assert loss["asym"] < loss["plain"], loss


def test_mix_weights_the_dense_outputs_against_the_layers_own():
    dense, pruned, weight = _pair(seed=3)
    hessian = 2.0 / 400 * pruned.T @ pruned
    cross = 2.0 / 400 * dense.T @ pruned
    torch.testing.assert_close(dense_target_weight(weight, hessian, cross, damp=0.0, mix=0.0), weight)
    mixed = dense_target_weight(weight, hessian, cross, damp=0.0, mix=0.25)
    target = 0.75 * pruned @ weight.T + 0.25 * dense @ weight.T  # (tokens, out)
    torch.testing.assert_close(mixed, torch.linalg.lstsq(pruned, target).solution.T)
    with pytest.raises(ValueError, match="mix must be in"):
        dense_target_weight(weight, hessian, cross, mix=1.5)


def test_dead_inputs_get_zero_weight():
    dense, pruned, weight = _pair(seed=2)
    pruned[:, 3] = 0.0
    hessian = 2.0 / 400 * pruned.T @ pruned
    fitted = dense_target_weight(weight, hessian, 2.0 / 400 * dense.T @ pruned)
    assert torch.all(fitted[:, 3] == 0)
    assert torch.isfinite(fitted).all()

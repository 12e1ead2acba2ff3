"""SparseGPT: exactness, OBS update maths, and lower reconstruction error than mask-only pruning."""

import pytest
import torch

from prunekit.core.patterns import NM, nm_keep_mask, unstructured_keep_mask
from prunekit.importance.magnitude import magnitude_scores
from prunekit.importance.wanda import wanda_scores
from prunekit.prune.sparsegpt import inverse_factor, obs_reconstruction_error, sparsegpt_prune


def _problem(seed: int = 0, n_out: int = 32, n_in: int = 64, n_tok: int = 512):
    """Correlated inputs with a few large-scale features; returns W (out, in), X (N, in), H (in, in)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(n_in) + 0.6 * torch.randn(n_in, n_in, generator=g) / n_in**0.5  # correlations
    X = torch.randn(n_tok, n_in, generator=g) @ mix
    X[:, [3, 17, 40]] *= 8.0  # outlier features
    W = torch.randn(n_out, n_in, generator=g)
    H = 2.0 / n_tok * X.T @ X
    return W, X, H


def test_sparsity_zero_returns_weight():
    W, _, H = _problem()
    new, mask = sparsegpt_prune(W, H, 0.0)
    assert torch.equal(new, W) and mask.all()


@pytest.mark.parametrize("sparsity,block_size", [(0.5, 128), (0.37, 16), (0.9, 24), (0.01, 7)])
def test_unstructured_exact_count(sparsity, block_size):
    W, _, H = _problem(1)
    new, mask = sparsegpt_prune(W, H, sparsity, block_size=block_size)
    assert (~mask).sum().item() == round(sparsity * W.numel())
    assert torch.all(new[~mask] == 0) and torch.isfinite(new).all()


def test_per_row_exact_count():
    W, _, H = _problem(2)
    new, mask = sparsegpt_prune(W, H, 0.45, block_size=16, per_row=True)
    assert torch.all((~mask).sum(-1) == round(0.45 * 64))
    assert torch.all(new[~mask] == 0)


@pytest.mark.parametrize("nm", [NM(2, 4), NM(4, 8), NM(1, 4)])
def test_nm_exact(nm):
    W, _, H = _problem(3)
    new, mask = sparsegpt_prune(W, H, 0.5, nm=nm, block_size=32)
    assert torch.all(mask.reshape(32, -1, nm.m).sum(-1) == nm.n)
    assert torch.all(new[~mask] == 0)


def _errors(W, H, mask):
    return obs_reconstruction_error(W, W * mask, H)


def test_beats_magnitude_and_wanda_unstructured():
    W, X, H = _problem(4)
    new, _ = sparsegpt_prune(W, H, 0.5)
    err_sgpt = obs_reconstruction_error(W, new, H)
    norm_sq = (X**2).sum(0)
    err_mag = _errors(W, H, unstructured_keep_mask(magnitude_scores(W), 0.5))
    err_wanda = _errors(W, H, unstructured_keep_mask(wanda_scores(W, norm_sq), 0.5, per_row=True))
    assert err_sgpt < 0.9 * err_wanda and err_wanda < 0.5 * err_mag  # measured: ~0.86 and ~0.3


def test_beats_wanda_nm():
    W, X, H = _problem(5)
    nm = NM(2, 4)
    new, _ = sparsegpt_prune(W, H, 0.5, nm=nm)
    err_sgpt = obs_reconstruction_error(W, new, H)
    err_wanda = _errors(W, H, nm_keep_mask(wanda_scores(W, (X**2).sum(0)), nm))
    err_mag = _errors(W, H, nm_keep_mask(magnitude_scores(W), nm))
    assert err_sgpt < 0.85 * err_wanda and err_wanda < err_mag  # measured: ~0.77


def test_obs_update_is_optimal_for_first_column():
    """Pruning only column 0: the OBS update equals the least-squares optimum w_K + H_KK^-1 H_K0 w_0."""
    torch.manual_seed(6)
    A = torch.randn(4, 4, dtype=torch.float64)
    H = A @ A.T + 0.5 * torch.eye(4, dtype=torch.float64)
    w = torch.tensor([[0.01, 1.0, -2.0, 1.5]], dtype=torch.float64)
    new, mask = sparsegpt_prune(w, H, 0.25, damp=0.0, dtype=torch.float64)
    assert torch.equal(mask, torch.tensor([[False, True, True, True]]))
    expected = w[0, 1:] + torch.linalg.solve(H[1:, 1:], H[1:, 0]) * w[0, 0]
    assert new[0, 0] == 0 and torch.allclose(new[0, 1:], expected, atol=1e-12)


def test_matches_explicit_sequential_obs():
    """One block: the Cholesky rows equal explicit inverses of the remaining Hessian H[i:, i:]."""
    torch.manual_seed(11)
    X = torch.randn(40, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    H = 2.0 / 40 * X.T @ X
    W = torch.randn(8, 12, dtype=torch.float64)
    new, mask = sparsegpt_prune(W, H, 0.5, block_size=12, damp=0.0, dtype=torch.float64)
    ref = W.clone()
    for i in range(12):  # textbook OBS: prune column i, update columns i.. with [H_F^-1]
        h_inv = torch.linalg.inv(H[i:, i:])  # (in-i, in-i)
        err = ref[:, i] * ~mask[:, i] / h_inv[0, 0]
        ref[:, i:] -= err[:, None] * h_inv[0][None, :]
    assert torch.allclose(new, ref, atol=1e-9)


def test_lazy_blocks_equal_eager_for_nm():
    """Lazy batch updates are exact: N:M results do not depend on block_size."""
    W, _, H = _problem(7)
    a, ma = sparsegpt_prune(W.double(), H.double(), 0.5, nm=NM(2, 4), block_size=4, dtype=torch.float64)
    b, mb = sparsegpt_prune(W.double(), H.double(), 0.5, nm=NM(2, 4), block_size=64, dtype=torch.float64)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-10)


def test_dead_inputs_and_dtype():
    W, X, _ = _problem(8)
    X[:, 5] = 0.0
    H = 2.0 / X.shape[0] * X.T @ X
    new, mask = sparsegpt_prune(W.to(torch.bfloat16), H, 0.5)
    assert new.dtype == torch.bfloat16 and torch.isfinite(new.float()).all()
    assert torch.all(new[:, 5] == 0) and not mask[:, 5].any()  # zero saliency: pruned first
    assert (~mask).sum().item() == W.numel() // 2


def test_reconstruction_error_formula():
    W, X, H = _problem(9)
    new = W * (torch.rand(W.shape) > 0.5)
    direct = 2.0 / X.shape[0] * ((W - new) @ X.T).pow(2).sum()
    assert obs_reconstruction_error(W, new, H) == pytest.approx(direct.item(), rel=1e-4)


def test_bad_inputs():
    W, _, H = _problem(10)
    with pytest.raises(ValueError, match="1.0"):
        sparsegpt_prune(W, H, 1.0)
    with pytest.raises(ValueError, match="-0.1"):
        sparsegpt_prune(W, H, -0.1)
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        sparsegpt_prune(W, H[:10, :10], 0.5)
    with pytest.raises(ValueError, match=r"M=8.*\(32, 60\)"):
        sparsegpt_prune(W[:, :60], H[:60, :60], 0.5, nm=NM(4, 8))
    with pytest.raises(ValueError, match="block_size divisible by M=4, got 6"):
        sparsegpt_prune(W, H, 0.5, nm=NM(2, 4), block_size=6)
    with pytest.raises(ValueError, match="damp"):
        sparsegpt_prune(W, H, 0.5, damp=-1.0)
    with pytest.raises(ValueError, match="positive definite"):
        sparsegpt_prune(W, -torch.eye(64), 0.5, damp=0.0)


def test_a_shared_inverse_factor_gives_the_same_result_and_dead_inputs_stay_zero():
    W, X, _ = _problem(5)
    X[:, 9] = 0.0  # a dead input
    H = 2.0 / X.shape[0] * X.T @ X
    factor = inverse_factor(H, 0.01)
    own, own_mask = sparsegpt_prune(W, H, 0.5)
    shared, shared_mask = sparsegpt_prune(W, H, 0.5, factor=factor)
    assert torch.equal(own, shared) and torch.equal(own_mask, shared_mask)
    assert torch.all(shared[:, 9] == 0)

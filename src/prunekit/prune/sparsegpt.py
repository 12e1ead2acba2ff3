"""SparseGPT: Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot" (ICML 2023, arXiv 2301.00774).

Prunes one Linear weight W (out, in) to minimise the layer reconstruction error
||W X - W_new X||^2 = trace(dW H dW^T), with H = (2/N) X^T X from ``HessianCollector``.
Columns are processed left to right; after a column is fixed, the error it makes is
pushed onto the not-yet-processed columns with the Optimal Brain Surgeon (OBS) update,
using rows of U, the upper Cholesky factor of H^-1 (H^-1 = U^T U). Row i of U holds the
inverse Hessian of the remaining columns i.., scaled by 1/sqrt([H_F^-1]_ii), so
U_ii^2 = [H_F^-1]_ii and the OBS saliency of weight w_ri is w_ri^2 / U_ii^2.

Updates inside a block of ``block_size`` columns are applied eagerly; updates to the
columns after the block are applied once per block ("lazy batch" update, one matmul).

``SPARSEGPT`` is the one-shot solver plug-in (prunekit.importance.criterion): it reads the "hessian"
statistic, and global / RD allocation rank weights across layers with Wanda's scores.
"""

from collections.abc import MutableMapping
from typing import Any

import torch
from torch import Tensor

from prunekit.core.patterns import NM, check_sparsity, keep_mask_by_count, nm_keep_mask, num_pruned
from prunekit.importance.criterion import Criterion
from prunekit.importance.wanda import WANDA

from .asymmetric import dense_target_map


def _check_args(weight: Tensor, hessian: Tensor, nm: NM | None, block_size: int, damp: float,
                dtype: torch.dtype) -> None:
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    n_in = weight.shape[1]
    if hessian.shape != (n_in, n_in):
        raise ValueError(f"hessian must have shape ({n_in}, {n_in}) for weight {tuple(weight.shape)}, "
                         f"got {tuple(hessian.shape)}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    if not (damp >= 0.0 and damp < float("inf")):
        raise ValueError(f"damp must be a finite number >= 0, got {damp!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if nm is not None:
        if n_in % nm.m:
            raise ValueError(f"N:M pattern {nm} needs in_features divisible by M={nm.m}, "
                             f"got weight of shape {tuple(weight.shape)}")
        if block_size % nm.m:
            raise ValueError(f"N:M pattern {nm} needs block_size divisible by M={nm.m}, got {block_size}")


def inverse_hessian_cholesky(hessian: Tensor, damp: float = 0.01) -> Tensor:
    """Upper Cholesky factor U of (H + lambda I)^-1, lambda = damp * mean(diag H). (in, in).

    ``hessian`` is modified in place (dampened). Raises ``ValueError`` if the dampened
    matrix is not positive definite (increase ``damp``).
    """
    lam = damp * torch.diagonal(hessian).mean()
    hessian.diagonal().add_(lam)
    chol, info = torch.linalg.cholesky_ex(hessian)  # H = L L^T
    if int(info) != 0:
        raise ValueError(f"Hessian is not positive definite after dampening with damp={damp}; "
                         f"use a larger damp (> {damp}) or more calibration tokens")
    h_inv = torch.cholesky_inverse(chol)  # (in, in)
    upper, info = torch.linalg.cholesky_ex(h_inv, upper=True)  # H^-1 = U^T U
    if int(info) != 0:
        raise ValueError(f"inverse Hessian is not positive definite with damp={damp}; use a larger damp")
    return upper


def inverse_factor(hessian: Tensor, damp: float = 0.01, dtype: torch.dtype = torch.float32) -> Tensor:
    """U of ``sparsegpt_prune`` for this Hessian: inputs that are always zero (diag H == 0) get H_ii = 1,
    then the upper Cholesky factor of the dampened inverse. (in, in); ``hessian`` is not modified.

    Layers that read the same input (q/k/v, gate/up) share it: compute once, pass as ``factor``.
    """
    H = hessian.detach().to(dtype=dtype, copy=True)  # (in, in)
    dead_idx = (torch.diagonal(H) == 0).nonzero().squeeze(1)
    H[dead_idx, dead_idx] = 1.0
    return inverse_hessian_cholesky(H, damp)


def _block_keep_mask(saliency: Tensor, sparsity: float, i1: int, i2: int, per_row: bool) -> Tensor:
    """Adaptive unstructured mask for columns [i1, i2): prune the lowest-saliency weights.

    The count per block is the difference of cumulative targets, so the totals telescope
    to exactly round(sparsity * out * in) (or round(sparsity * in) per row).
    """
    n_out = saliency.shape[0]
    if per_row:
        k = num_pruned(sparsity, i2) - num_pruned(sparsity, i1)  # per row
    else:
        k = num_pruned(sparsity, n_out * i2) - num_pruned(sparsity, n_out * i1)
    limit = saliency.shape[1] if per_row else saliency.numel()
    return keep_mask_by_count(saliency, min(max(k, 0), limit), per_row=per_row)


def sparsegpt_prune(
    weight: Tensor,
    hessian: Tensor,
    sparsity: float,
    *,
    nm: NM | None = None,
    block_size: int = 128,
    damp: float = 0.01,
    per_row: bool = False,
    dtype: torch.dtype = torch.float32,
    factor: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Prune ``weight`` (out, in) with SparseGPT; return ``(new_weight, keep_mask)``.

    weight (out, in) and hessian (in, in) H = (2/N) X^T X are not modified; ``new_weight`` has weight's dtype and
    device. sparsity: fraction in [0, 1) to prune (unstructured; ignored with ``nm``). nm: N:M pattern along the
    input dim, the n kept per group of m chosen at the start of each group from the updated weights. block_size:
    columns per lazy-update block (a multiple of ``nm.m``). damp: lambda = damp * mean(diag H) added to diag H.
    per_row: unstructured only, the same count in every output row. dtype: float32 (default) or float64.
    factor: ``inverse_factor(hessian, damp, dtype)`` when already computed (shared by layers reading one input).

    Exactness: ``keep_mask`` has exactly ``round(sparsity * out * in)`` False entries
    (``round(sparsity * in)`` per row with ``per_row``), or exactly ``n`` True per group of
    ``m`` for N:M. The mask is chosen per block of columns (adaptive mask selection),
    block k pruning ``round(s*out*end_k) - round(s*out*start_k)`` weights, so per-block
    counts differ from ``s*out*block`` by < 1. ``new_weight`` is 0 wherever the mask is
    False; it may hold extra zeros at dead inputs (diag H == 0, whose columns are zeroed).
    With nothing to prune (unstructured, round(...) == 0) ``weight`` is returned unchanged.
    """
    _check_args(weight, hessian, nm, block_size, damp, dtype)
    if nm is None:
        check_sparsity(sparsity)
    n_in = weight.shape[1]
    if nm is None and num_pruned(sparsity, n_in if per_row else weight.numel()) == 0:
        return weight.detach().clone(), torch.ones(weight.shape, dtype=torch.bool, device=weight.device)

    W = weight.detach().to(dtype=dtype, copy=True)  # (out, in)
    dead = torch.diagonal(hessian) == 0  # (in,) inputs that are always zero
    W[:, dead] = 0.0
    U = inverse_factor(hessian, damp, dtype) if factor is None else factor.to(device=W.device, dtype=dtype)

    keep = torch.ones(W.shape, dtype=torch.bool, device=W.device)  # (out, in)
    for i1 in range(0, n_in, block_size):
        i2 = min(i1 + block_size, n_in)
        W1 = W[:, i1:i2].clone()  # (out, B) current block
        U1 = U[i1:i2, i1:i2]  # (B, B)
        d = torch.diagonal(U1)  # (B,) sqrt([H_F^-1]_ii)
        err1 = torch.zeros_like(W1)  # (out, B) scaled OBS errors
        if nm is None:
            keep1 = _block_keep_mask(W1.square() / d.square(), sparsity, i1, i2, per_row)  # (out, B)
        else:
            keep1 = torch.ones(W1.shape, dtype=torch.bool, device=W.device)
        _prune_columns(W1, U1, d, keep1, err1, nm)
        W[:, i1:i2] = W1
        W[:, i2:].addmm_(err1, U[i1:i2, i2:], alpha=-1.0)  # lazy batch update of later columns
        keep[:, i1:i2] = keep1
    return W.to(dtype=weight.dtype), keep


def _prune_columns(W1: Tensor, U1: Tensor, d: Tensor, keep1: Tensor, err1: Tensor, nm: NM | None) -> None:
    """One block, column by column, in place: prune column i to its mask (for N:M chosen at the start of each
    group from the updated weights), and spread its scaled error err_i = (w_i - q_i) / d_i over the later columns
    of the block with row i of U1 (the OBS update). W1, keep1, err1: (out, B); U1: (B, B); d = diag(U1)."""
    for i in range(W1.shape[1]):
        if nm is not None and i % nm.m == 0:
            group = slice(i, i + nm.m)
            keep1[:, group] = nm_keep_mask(W1[:, group].square() / d[group].square(), nm)
        w = W1[:, i]  # (out,)
        q = w * keep1[:, i]  # (out,) pruned entries set to 0
        err = (w - q) / d[i]  # (out,)
        W1[:, i + 1:].addr_(err, U1[i, i + 1:], alpha=-1.0)  # OBS update of later block columns
        W1[:, i] = q
        err1[:, i] = err


def obs_reconstruction_error(weight: Tensor, new_weight: Tensor, hessian: Tensor) -> float:
    """trace((W - W_new) H (W - W_new)^T), computed in float64.

    With H = (2/N) X^T X this is 2/N * ||W X^T - W_new X^T||_F^2, the layer-wise loss SparseGPT minimises.
    """
    delta = (weight.detach().double() - new_weight.detach().double())  # (out, in)
    return float(((delta @ hessian.detach().double()) * delta).sum())


def sparsegpt_solve(weight: Tensor, stats: MutableMapping[str, Any], ratio: float, nm: NM | None,
                    config: Any) -> Tensor:
    """New weights (out, in) for ``weight`` (out, in) from the "hessian" statistic (in, in) of its input.

    With a "cross" moment (SparseGPT's ``dense_targets``) the weights are first mapped towards the dense model's
    outputs (prune/asymmetric.py). The inverse factor and that map are memoised in ``stats``, which the layers
    reading one input (q/k/v, gate/up) share.
    """
    hessian = stats["hessian"]
    if stats.get("cross") is not None:
        if "_dense_map" not in stats:
            stats["_dense_map"] = dense_target_map(hessian, stats["cross"], damp=config.damp, mix=config.dense_targets)
        weight = weight @ stats["_dense_map"]  # (out, in)
    if "_factor" not in stats:
        stats["_factor"] = inverse_factor(hessian, config.damp)
    new, _ = sparsegpt_prune(weight, hessian, ratio, nm=nm, block_size=config.block_size, damp=config.damp,
                             factor=stats["_factor"])
    return new


SPARSEGPT = Criterion(statistics=("hessian",), solve=sparsegpt_solve, ranked_by=WANDA)

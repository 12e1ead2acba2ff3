"""Asymmetric calibration for one-shot pruning: match the dense model's outputs, not the pruned layer's own.

GPTAQ (Li, Yin, Lee, Xiao & Panda, "GPTAQ: Efficient Finetuning-Free Quantization for Asymmetric
Calibration", ICML 2025, arXiv 2504.02692) calibrates each layer so that its output on the inputs it
really receives (Xp, after the earlier layers were compressed) matches the dense model's output on the
dense inputs (X), instead of the layer's own dense output on Xp. The paper derives this for GPTQ's
quantization; for pruning the same objective splits exactly. With tokens as rows,

    ||X W^T - Xp V^T||^2 = ||X W^T - Xp W*^T||^2 + ||Xp (W* - V)^T||^2,
    W* = W G H^-1,  G = X^T Xp,  H = Xp^T Xp,

because the residual of the least-squares solution W* is orthogonal to Xp's columns. The first term
does not depend on V, so pruning W* with SparseGPT's usual Hessian H minimises the asymmetric
objective. (A ridge lam = damp * mean(diag H) keeps H^-1 stable, as in SparseGPT.)

Fitting the dense outputs fully over-fits a small calibration set (SmolLM2-135M, 32 x 512 tokens:
perplexity 54.4 vs 47.2 without). GPTAQ's released code scales its asymmetric term by alpha = 0.25 for
the same reason. Here the weight of the mix is ``mix``: the target is (1 - mix) * (the layer's own
output on Xp) + mix * (the dense output), whose least-squares map is W + mix * (W* - W), and the same
split holds, so SparseGPT on that map minimises the mixed objective exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_target_map(hessian: Tensor, cross: Tensor, *, damp: float = 0.01, mix: float = 1.0) -> Tensor:
    """B (in, in) with W + mix * (W* - W) = W B for every weight W reading this input:
    B = (1 - mix) I + mix G (H + lam I)^-1. mix = 1 fits the dense outputs alone, mix = 0 gives I.

    H and G carry the same scale (both (2/N) sums over the same N tokens). Inputs that are always zero
    in the pruned model (diag H == 0) get zero weight (their columns of B are 0). In H's dtype.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1] or cross.shape != hessian.shape:
        raise ValueError(f"hessian and cross must be square and of one shape, got {tuple(hessian.shape)} "
                         f"and {tuple(cross.shape)}")
    n_in = hessian.shape[0]
    lam = damp * torch.diagonal(hessian).mean().clamp_min(1e-30)
    system = hessian + lam * torch.eye(n_in, dtype=hessian.dtype, device=hessian.device)
    chol, info = torch.linalg.cholesky_ex(system)
    if int(info) != 0:
        raise ValueError(f"Hessian is not positive definite after dampening with damp={damp}; use a larger damp")
    # G (H + lam I)^-1 = ((H + lam I)^-1 G^T)^T since H is symmetric
    mapping = mix * torch.cholesky_solve(cross.T.contiguous().to(hessian.dtype), chol).T
    mapping.diagonal().add_(1.0 - mix)
    mapping[:, torch.diagonal(hessian) == 0] = 0.0
    return mapping


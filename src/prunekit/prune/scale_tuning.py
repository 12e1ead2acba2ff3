"""Per-neuron scale tuning of a layer whose input channels were pruned (COMP's "mask tuning").

Xu et al. 2025, COMP (arXiv 2501.15255), recover
a structurally pruned layer without gradients by rescaling each kept input channel so that the layer's
output matches the dense one on calibration data. With W (out, in) the dense weight, X (in, N) its inputs
and A = W[:, k] the kept columns, the scales s (k,) minimise ||W X - A diag(s) X_k||_F^2. The normal
equations are

    (A^T A  o  H_kk) s = diag(A^T W H[:, k]),    H = X X^T   (o: elementwise product),

so, like the least-squares refit (prune/refit.py), only the Gram matrix is needed. With an intercept
(FLAP-style bias compensation) the scales are solved on centred statistics, H -> X X^T - N mu mu^T, and
the intercept is the mean residual W mu - A diag(s) mu_k. This is a k-parameter special case of the full
refit: cheaper to store and less prone to overfitting small calibration sets.
"""

from __future__ import annotations

import torch
from torch import Tensor


def tune_scales(weight: Tensor, gram: Tensor, keep: Tensor, *, damp: float = 0.01, mean: Tensor | None = None,
                count: int | None = None) -> tuple[Tensor, Tensor | None]:
    """(scales (k,), intercept (out,) or None) for weight (out, in), gram = X X^T (in, in), keep (k,).

    mean (in,) and count: the inputs' mean and token count; when given, an intercept is fitted too.
    The ridge damp * mean(diag(M)) pulls the scales towards 1 (no change)."""
    keep = keep.long()
    w = weight.detach().double()  # (out, in)
    h = gram.double()
    if mean is not None:
        if count is None:
            raise ValueError("mean needs count (the number of tokens)")
        mu = mean.double()
        h = h - count * torch.outer(mu, mu)  # centred Gram
    a = w[:, keep]  # (out, k)
    system = (a.T @ a) * h[keep][:, keep]  # (k, k)
    rhs = ((a.T @ w) * h[:, keep].T).sum(dim=1)  # (k,) = diag(A^T W H[:, k])
    lam = damp * torch.diagonal(system).mean().clamp_min(1e-30)
    ones = torch.ones(len(keep), dtype=torch.float64)
    scales = torch.linalg.solve(system + lam * torch.eye(len(keep), dtype=torch.float64), rhs + lam * ones)
    if mean is None:
        return scales.to(weight.dtype), None
    intercept = w @ mu - a @ (scales * mu[keep])  # (out,)
    return scales.to(weight.dtype), intercept.to(weight.dtype)

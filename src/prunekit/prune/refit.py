"""Least-squares refit of an output projection after some of its input channels were removed.

The local re-solve of Týr-the-Pruner (Li et al., NeurIPS 2025; code AMD-AGI/Tyr-the-Pruner,
src/local_pruner.py, "re-solve the kept weights as H_kk^-1 G_k"). With X (in, N) the calibration
inputs of the dense layer and Y = W X its outputs (bias excluded):

    W_keep = Y X_k^T (X_k X_k^T + lam I)^-1 = W H[:, k] (H[k, k] + lam I)^-1,   H = X X^T,

so only the Gram matrix H is needed. With `sums` (sum_t x_t) and `count`, an intercept c is fitted too
(X is augmented with a row of ones), which generalises FLAP's bias compensation: the layer's new bias
is b + c. lam = damp * mean(diag H[k, k]).
"""

from __future__ import annotations

import torch
from torch import Tensor


def refit_columns(weight: Tensor, gram: Tensor, keep: Tensor, *, damp: float = 0.01, sums: Tensor | None = None,
                  count: int | None = None) -> tuple[Tensor, Tensor | None]:
    """(W_keep (out, k), intercept (out,) or None) for weight (out, in), gram = X X^T (in, in), keep (k,)."""
    keep = keep.long()
    w = weight.detach().double()  # (out, in)
    h = gram.double()  # (in, in)
    cross = h[:, keep]  # (in, k)  = X X_k^T
    system = h[keep][:, keep]  # (k, k)  = X_k X_k^T
    if sums is not None:
        if count is None:
            raise ValueError("sums needs count (the number of tokens)")
        s = sums.double()  # (in,)
        cross = torch.cat([cross, s[:, None]], dim=1)  # (in, k+1)
        top = torch.cat([system, s[keep][:, None]], dim=1)  # (k, k+1)
        bottom = torch.cat([s[keep], s.new_tensor([float(count)])])[None]  # (1, k+1)
        system = torch.cat([top, bottom], dim=0)  # (k+1, k+1)
    lam = damp * torch.diagonal(system).mean().clamp_min(1e-12)
    system = system + lam * torch.eye(system.shape[0], dtype=system.dtype)
    rhs = w @ cross  # (out, k[+1]) = Y X_k^T
    solved = torch.linalg.solve(system, rhs.T).T  # (out, k[+1])
    if sums is None:
        return solved.to(weight.dtype), None
    return solved[:, :-1].to(weight.dtype), solved[:, -1].to(weight.dtype)


def reconstruction_error(weight: Tensor, new_weight: Tensor, keep: Tensor, gram: Tensor,
                         intercept: Tensor | None = None, sums: Tensor | None = None,
                         count: int | None = None) -> float:
    """||W X - (W' X_k + c)||_F^2 from the Gram statistics (no activations needed)."""
    keep = keep.long()
    w = weight.detach().double()
    diff = -w.clone()  # (out, in): D = W' on kept columns minus W
    diff[:, keep] += new_weight.double()
    err = torch.einsum("oi,ij,oj->", diff, gram.double(), diff)
    if intercept is not None:
        c = intercept.double()
        err = err + 2 * (diff @ sums.double()) @ c + count * c.square().sum()
    return float(err)

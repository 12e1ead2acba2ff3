"""Block importance as the angular distance between a decoder block's input and output hidden states,
and per-block keep ratios derived from it.

Angular distance d(x, y) = arccos(cos(x, y)) / pi in [0, 1], averaged over calibration tokens, as in
CFSP (Wang et al., "CFSP: An Efficient Structured Pruning Framework for LLMs with Coarse-to-Fine
Activation Information", block metric g_i = sum_t arccos(cos(h_in, h_out))/pi) and Gromov et al.,
"The Unreasonable Ineffectiveness of the Deeper Layers" (2024). A block that barely rotates the
residual stream (d ~ 0) matters little; ShortGPT (Men et al. 2024) uses 1 - cos for the same ranking.
Keep ratios follow CFSP step 3: keep_i proportional to g_i, clipped, renormalised to the target.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..utils.hooks import HookSet


def angular_distance(h_in: Tensor, h_out: Tensor, eps: float = 1e-8) -> Tensor:
    """(...,) arccos(cos(h_in, h_out)) / pi per token, for h_in, h_out (..., d)."""
    x, y = h_in.double(), h_out.double()
    cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(eps)  # (...,)
    return torch.arccos(cos.clamp(-1.0, 1.0)) / torch.pi


@torch.no_grad()
def block_angular_importance(model: nn.Module, blocks: Any, windows: Tensor, batch_size: int = 4,
                             attention_mask: Tensor | None = None) -> Tensor:
    """(n_blocks,) mean angular distance between each block's input and output over all tokens of `windows`
    (samples, seq_len) token ids, in one dense forward pass per batch."""
    blocks = list(blocks)
    sums = torch.zeros(len(blocks), dtype=torch.float64)
    counts = torch.zeros(len(blocks), dtype=torch.float64)
    pending: dict[int, Tensor] = {}

    def pre(i):
        def hook(_module, args, kwargs):
            pending[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def post(i):
        def hook(_module, _args, out):
            h_out = out[0] if isinstance(out, tuple | list) else out
            d = angular_distance(pending.pop(i), h_out)  # (B, T)
            sums[i] += d.sum().item()
            counts[i] += d.numel()
        return hook

    with HookSet() as hooks:
        for i, block in enumerate(blocks):
            hooks.forward_pre(block, pre(i), with_kwargs=True)
            hooks.forward(block, post(i))
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start:start + batch_size], use_cache=False)
    return (sums / counts.clamp_min(1)).float()


def keep_ratios(importance: Tensor, target_keep: float, weights: Tensor | None = None, *, low: float = 0.05,
                high: float = 1.0, iterations: int = 100) -> Tensor:
    """(L,) keep ratios k_i proportional to importance (L,), clipped to [low, high], with
    sum_i w_i k_i / sum_i w_i == target_keep exactly (w: e.g. each block's parameters; default 1).

    Blocks that hit a bound are fixed there and the rest are rescaled, until none moves.
    """
    imp = importance.double().clamp_min(0)
    n = imp.numel()
    w = torch.ones(n, dtype=torch.float64) if weights is None else weights.double()
    if not low <= target_keep <= high:
        raise ValueError(f"target_keep {target_keep} must lie in [low={low}, high={high}]")
    if imp.sum() <= 0:
        imp = torch.ones(n, dtype=torch.float64)
    budget = target_keep * w.sum()
    fixed = torch.zeros(n, dtype=torch.bool)
    keep = torch.zeros(n, dtype=torch.float64)
    for _ in range(iterations):
        free = ~fixed
        rest = budget - (w[fixed] * keep[fixed]).sum()
        denom = (w[free] * imp[free]).sum()
        if not free.any():
            break
        if denom <= 0:  # the free blocks have no importance: spread the rest evenly
            keep[free] = rest / w[free].sum()
        else:
            keep[free] = imp[free] * rest / denom
        over = free & (keep > high)
        under = free & (keep < low)
        if not over.any() and not under.any():
            break
        if over.any():  # fix the ceilings first: rescaling may then lift the blocks below the floor
            keep[over] = high
            fixed |= over
        else:
            keep[under] = low
            fixed |= under
    return keep.clamp(low, high).float()

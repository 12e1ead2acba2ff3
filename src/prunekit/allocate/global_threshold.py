"""Global threshold allocation: one score threshold over all layers, so layers with
lower scores lose more (global magnitude pruning, e.g. Han et al. 2015; Blalock et al.
2020 "What is the State of Neural Network Pruning?" call it global pruning).

Scores must be comparable across layers (e.g. |W|); that is the caller's choice.
"""

from collections.abc import Mapping

import torch
from torch import Tensor

from prunekit.core.patterns import check_sparsity, num_pruned


def global_threshold_masks(scores: Mapping[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """Keep masks (True = keep) pruning exactly ``round(sparsity * total)`` weights overall.

    ``total`` is the number of scores over all layers. Weights strictly below the
    threshold (the k-th smallest score) are pruned; ties at the threshold keep the
    earlier weights (dict order, then flat index), so a single layer gives the same
    mask as ``unstructured_keep_mask``. Works on CPU copies of the flattened scores
    (float32): peak extra memory is about 2 x 4 bytes x total.
    """
    s = check_sparsity(sparsity)
    if not scores:
        raise ValueError("scores must name at least one layer, got an empty mapping")
    flat = {name: t.detach().reshape(-1).float().cpu() for name, t in scores.items()}
    for name, f in flat.items():
        if torch.isnan(f).any():
            raise ValueError(f"scores[{name!r}] contains NaN")
    total = sum(f.numel() for f in flat.values())
    k = num_pruned(s, total)
    if k == 0:
        return {name: torch.ones_like(t, dtype=torch.bool) for name, t in scores.items()}
    threshold = torch.kthvalue(torch.cat(list(flat.values())), k).values  # k-th smallest
    prune = {name: f < threshold for name, f in flat.items()}
    ties_left = k - sum(int(p.sum()) for p in prune.values())
    for name in reversed(list(flat)):  # prune ties from the end: earlier weights are kept
        if ties_left == 0:
            break
        tie_idx = (flat[name] == threshold).nonzero().squeeze(1)[-ties_left:]
        prune[name][tie_idx] = True
        ties_left -= tie_idx.numel()
    return {name: (~prune[name]).reshape(t.shape).to(t.device) for name, t in scores.items()}


def ratios_from_masks(masks: Mapping[str, Tensor]) -> dict[str, float]:
    """Pruned fraction (False entries) of each keep mask."""
    return {name: 1.0 - m.count_nonzero().item() / max(m.numel(), 1) for name, m in masks.items()}

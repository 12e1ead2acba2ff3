"""First-order Taylor importance for structured pruning: the loss change from removing a unit is
estimated by sum |w * dL/dw| over every parameter element the unit owns (Molchanov et al. 2019,
"Importance Estimation for Neural Network Pruning"; LLM-Pruner, Ma et al. 2023, element-wise form)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def taylor_scores(slices: Sequence[tuple[Tensor, Tensor, int, Tensor]], num_units: int) -> Tensor:
    """(num_units,) float32 scores, higher = keep.

    slices: (weight, grad, dim, unit) with grad shaped like weight and unit[i] the unit owning index i
    along `dim` (or -1).
    """
    total = torch.zeros(num_units, dtype=torch.float64)
    for weight, grad, dim, unit in slices:
        wg = (weight.detach().double() * grad.double()).abs()
        per_index = wg.sum(dim=[d for d in range(wg.ndim) if d != dim]) if wg.ndim > 1 else wg  # (size,)
        keep = unit >= 0
        total.index_add_(0, unit[keep], per_index[keep])
    return total.float()


def accumulate_gradients(model: nn.Module, batches: Iterable[Any], loss_fn: Callable[[nn.Module, Any], Tensor]
                         ) -> dict[int, Tensor]:
    """Sum of dL/dw over `batches` for every parameter, keyed by id(parameter); grads are then cleared."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for batch in batches:
                loss_fn(model, batch).backward()
        grads = {id(p): (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for p in params}
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
        model.train(was_training)
    return grads


def causal_lm_loss(model: nn.Module, input_ids: Tensor) -> Tensor:
    """Next-token cross-entropy of a Hugging Face causal LM on a (B, T) batch of token ids."""
    return model(input_ids=input_ids, labels=input_ids, use_cache=False).loss

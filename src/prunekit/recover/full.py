"""Full fine-tuning of the chosen layers with their zeros kept exactly: the gradient of a pruned weight is
masked before the optimizer step and the weight re-zeroed after it (masked fine-tuning as in SparseGPT's and
Wanda's recovery experiments; with AdamW a zero gradient already leaves a zero weight, re-zeroing makes it
exact whatever the optimizer)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..train import TrainPlugin
from .lora import sparse_masks


def full_parameters(model: nn.Module, modules: dict[str, nn.Module]) -> list[tuple[str, nn.Parameter]]:
    """Weights and biases of `modules`, made trainable; every other parameter of `model` frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = []
    for name, module in modules.items():
        for attr in ("weight", "bias"):
            p = getattr(module, attr, None)
            if isinstance(p, nn.Parameter):
                p.requires_grad_(True)
                chosen.append((f"{name}.{attr}", p))
    return chosen


class KeepZeros(TrainPlugin):
    """Masked gradients and re-zeroed weights for layers with at least `min_sparsity` zeros."""

    def __init__(self, modules: dict[str, nn.Module], min_sparsity: float) -> None:
        self.modules = modules
        self.masks = sparse_masks(modules, min_sparsity)

    def after_backward(self, trainer: Any) -> None:
        for name, keep in self.masks.items():
            grad = self.modules[name].weight.grad
            if grad is not None:
                grad.mul_(keep)

    def after_step(self, trainer: Any, step: int) -> None:
        with torch.no_grad():
            for name, keep in self.masks.items():
                self.modules[name].weight.mul_(keep)

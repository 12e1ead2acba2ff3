"""Gradient statistics of chosen weights under the language-model loss: the mean gradient and the empirical
Fisher diagonal, for criteria that need first- and second-order information (D-Pruner, Zhang et al. 2024;
Fisher pruning, Theis et al. 2018).

For windows n = 1..N of token ids, g_n = dL_n/dW, where L_n is the mean next-token cross entropy of window n.
Returned per weight: the gradient g = (1/N) sum_n g_n and the empirical Fisher F = (1/N) sum_n g_n^2 (one
backward pass per window, so F is taken over windows), both shaped like the weight.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class GradientCollector:
    """Running sums of per-sample gradients and of their squares for `weights` (name -> parameter).

    Call `add_sample()` after each sample's backward pass: it reads and clears the gradients.
    """

    def __init__(self, weights: Mapping[str, nn.Parameter]):
        self.weights = dict(weights)
        self.n_samples = 0
        self._sum = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in self.weights.items()}
        self._sq_sum = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in self.weights.items()}

    def add_sample(self) -> None:
        for name, weight in self.weights.items():
            if weight.grad is None:
                raise RuntimeError(f"weight '{name}' has no gradient: is it used by the loss?")
            grad = weight.grad.detach().float()  # shaped like the weight
            self._sum[name].add_(grad)
            self._sq_sum[name].addcmul_(grad, grad)
        for weight in self.weights.values():  # cleared after reading all: tied weights share one gradient
            weight.grad = None
        self.n_samples += 1

    def result(self) -> dict[str, dict[str, Tensor]]:
        """{name: {"gradient": g, "fisher": F}}, both shaped like the weight."""
        if self.n_samples == 0:
            raise RuntimeError("GradientCollector.result() called before any add_sample()")
        return {name: {"gradient": self._sum[name] / self.n_samples, "fisher": self._sq_sum[name] / self.n_samples}
                for name in self.weights}


def lm_gradient_statistics(model: nn.Module, weights: Mapping[str, nn.Parameter],
                           windows: Tensor) -> dict[str, dict[str, Tensor]]:
    """Mean gradient and empirical Fisher of `weights` over `windows` (N, T) of token ids, one forward and backward
    pass per window. Only `weights` require gradients meanwhile; every parameter's requires_grad and grad are
    restored afterwards (also on errors)."""
    params = list(model.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    collector = GradientCollector(weights)
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        for weight in weights.values():
            weight.requires_grad_(True)
        with torch.enable_grad():
            for ids in windows:
                ids = ids.unsqueeze(0)  # (1, T)
                logits = model(input_ids=ids, use_cache=False).logits  # (1, T, vocab)
                loss = nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
                loss.backward()
                collector.add_sample()
    finally:
        for p, requires_grad, grad in saved:
            p.requires_grad_(requires_grad)
            p.grad = grad
    return collector.result()

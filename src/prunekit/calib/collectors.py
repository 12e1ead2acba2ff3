"""Streaming statistics of a Linear layer's input ``x`` of shape (..., in).

All leading dims are flattened into tokens. Feed batches with ``add_batch(x)`` from a
forward hook, then read ``result()``.

* ``InputNormCollector``: ||X_j||_2^2 = sum_t x_tj^2 (Wanda; Sun et al. 2023).
* ``HessianCollector``: H = (2/N) sum_t x_t x_t^T (SparseGPT; Frantar & Alistarh 2023,
  "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").
"""

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Collector(ABC):
    """Accumulator of per-layer input statistics over calibration tokens."""

    def __init__(self) -> None:
        self.n_tokens = 0
        self.in_features: int | None = None

    def _tokens(self, inputs: Tensor) -> Tensor:
        """Flatten ``inputs`` (..., in) to (tokens, in) and check ``in`` is stable."""
        if inputs.ndim < 1:
            raise ValueError("inputs must have shape (..., in), got a 0-d tensor")
        if self.in_features is None:
            self.in_features = inputs.shape[-1]
        elif inputs.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs last dim must be in_features={self.in_features}, got shape {tuple(inputs.shape)}"
            )
        return inputs.detach().reshape(-1, inputs.shape[-1])  # (T, in)

    def _running_average(self, acc: Tensor | None, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Zero (in, in) accumulator on first use; rescale it by N/(N+T) and count the T new tokens of x."""
        t = x.shape[0]
        if acc is None:
            acc = torch.zeros(x.shape[1], x.shape[1], dtype=dtype, device=x.device)
        acc.mul_(self.n_tokens / (self.n_tokens + t))
        self.n_tokens += t
        return acc

    def _check_ready(self) -> None:
        if self.n_tokens == 0:
            raise RuntimeError(f"{type(self).__name__}.result() called before any non-empty add_batch()")

    @abstractmethod
    def add_batch(self, inputs: Tensor) -> None:
        """Accumulate one batch of layer inputs (..., in)."""

    @abstractmethod
    def result(self) -> Tensor:
        """Return the statistic over all tokens seen so far."""


class InputNormCollector(Collector):
    """Squared L2 norm of each input feature over all tokens: ||X_j||_2^2, shape (in,).

    Per-batch sums are taken in float32 and accumulated in float64.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sq_sum: Tensor | None = None  # (in,) float64

    def add_batch(self, inputs: Tensor) -> None:
        x = self._tokens(inputs)  # (T, in)
        if x.shape[0] == 0:
            return
        batch_sq = x.float().square().sum(dim=0).double()  # (in,)
        self._sq_sum = batch_sq if self._sq_sum is None else self._sq_sum + batch_sq
        self.n_tokens += x.shape[0]

    def result(self) -> Tensor:
        self._check_ready()
        return self._sq_sum.float()  # (in,)


class HessianCollector(Collector):
    """Layer-wise Hessian of the reconstruction loss, H = (2/N) sum_t x_t x_t^T, shape (in, in).

    Uses SparseGPT's running average: on a batch of T tokens,
    ``H <- H * N/(N+T)``, ``N <- N+T``, ``H += (sqrt(2/N) X)^T (sqrt(2/N) X)``, which equals
    the batch formula in exact arithmetic. ``dtype`` is the accumulator type.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self._H: Tensor | None = None  # (in, in)

    def add_batch(self, inputs: Tensor) -> None:
        x = self._tokens(inputs)  # (T, in)
        if x.shape[0] == 0:
            return
        self._H = self._running_average(self._H, x, self.dtype)
        xs = x.to(self.dtype) * math.sqrt(2.0 / self.n_tokens)  # (T, in)
        self._H.addmm_(xs.T, xs)

    def result(self) -> Tensor:
        self._check_ready()
        return self._H.to(torch.float32, copy=True)  # (in, in)


class CrossMomentCollector(Collector):
    """G = (2/N) sum_t x_t xp_t^T, shape (in, in), of paired inputs: ``dense`` (the dense model's
    input to a layer) and ``pruned`` (the same layer's input in the model being pruned), token for
    token. With the Hessian of ``pruned`` it gives the least-squares weights that map the pruned
    inputs to the dense outputs (prunekit.prune.asymmetric). Same running average as ``HessianCollector``.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dtype = dtype
        self._G: Tensor | None = None  # (in, in)

    def add_batch(self, inputs: Tensor) -> None:
        raise TypeError("CrossMomentCollector needs paired inputs: use add_pair(dense, pruned)")

    def add_pair(self, dense: Tensor, pruned: Tensor) -> None:
        if dense.shape != pruned.shape:
            raise ValueError(f"dense and pruned inputs must have the same shape, got {tuple(dense.shape)} "
                             f"and {tuple(pruned.shape)}")
        x, xp = self._tokens(dense), self._tokens(pruned)  # (T, in) each
        if x.shape[0] == 0:
            return
        self._G = self._running_average(self._G, x, self.dtype)
        self._G.addmm_(x.to(self.dtype).T, xp.to(self.dtype), alpha=2.0 / self.n_tokens)

    def result(self) -> Tensor:
        self._check_ready()
        return self._G.to(torch.float32, copy=True)  # (in, in)

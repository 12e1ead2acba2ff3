"""Streaming per-channel mean and variance of a Linear layer's input (FLAP's "fluctuation").

An et al., "Fluctuation-based Adaptive Structured Pruning for Large Language Models" (FLAP, AAAI'24)
score each input channel j of o_proj / down_proj by the variance of x_j over calibration tokens, and
use the mean of x_j to compensate the bias when the channel is removed. Batches are merged with
Chan et al.'s parallel update in float64, so the result does not depend on how tokens are batched.
"""

from __future__ import annotations

from torch import Tensor

from .collectors import Collector


class FluctuationCollector(Collector):
    """Mean (in,) and population variance (in,) of every input feature over all tokens seen."""

    def __init__(self) -> None:
        super().__init__()
        self._mean: Tensor | None = None  # (in,) float64
        self._m2: Tensor | None = None  # (in,) float64, sum of squared deviations

    def add_batch(self, inputs: Tensor) -> None:
        x = self._tokens(inputs).double()  # (T, in)
        t = x.shape[0]
        if t == 0:
            return
        batch_mean = x.mean(dim=0)  # (in,)
        batch_m2 = (x - batch_mean).square().sum(dim=0)  # (in,)
        if self._mean is None:
            self._mean, self._m2 = batch_mean, batch_m2
        else:
            n = self.n_tokens
            delta = batch_mean - self._mean  # (in,)
            total = n + t
            self._mean = self._mean + delta * (t / total)
            self._m2 = self._m2 + batch_m2 + delta.square() * (n * t / total)
        self.n_tokens += t

    @property
    def mean(self) -> Tensor:
        self._check_ready()
        return self._mean.float()  # (in,)

    @property
    def variance(self) -> Tensor:
        self._check_ready()
        return (self._m2 / self.n_tokens).float()  # (in,)

    def result(self) -> Tensor:
        """The variance (in,)."""
        return self.variance

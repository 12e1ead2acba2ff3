"""Magnitude importance |W| (Han et al. 2015, "Learning both Weights and Connections for
Efficient Neural Networks"; the standard LLM baseline in Sun et al. 2023, Wanda)."""

from torch import Tensor

from .criterion import Criterion


def magnitude_scores(weight: Tensor) -> Tensor:
    """Return ``|W|`` as float32, same shape as ``weight``."""
    return weight.detach().abs().float()


MAGNITUDE = Criterion(group="layer", score=lambda weight, stats, config: magnitude_scores(weight))

"""Random importance: the sanity baseline every pruning criterion must beat (e.g. Blalock
et al. 2020, "What is the State of Neural Network Pruning?")."""

import torch
from torch import Tensor

from .criterion import Criterion
from .magnitude import MAGNITUDE


def random_scores(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform [0, 1) float32 scores shaped like ``weight``; reproducible with ``generator``."""
    device = generator.device if generator is not None else weight.device
    scores = torch.rand(weight.shape, generator=generator, device=device, dtype=torch.float32)
    return scores.to(weight.device)


# Random scores say nothing about one layer against another: global and RD allocation rank by magnitude.
RANDOM = Criterion(group="layer", score=lambda weight, stats, config: random_scores(weight, stats["generator"]),
                   ranked_by=MAGNITUDE)

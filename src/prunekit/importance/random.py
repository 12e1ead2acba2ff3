"""Random importance: the sanity baseline every pruning criterion must beat (e.g. Blalock
et al. 2020, "What is the State of Neural Network Pruning?")."""

import torch
from torch import Tensor


def random_scores(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform [0, 1) float32 scores shaped like ``weight``; reproducible with ``generator``."""
    device = generator.device if generator is not None else weight.device
    scores = torch.rand(weight.shape, generator=generator, device=device, dtype=torch.float32)
    return scores.to(weight.device)

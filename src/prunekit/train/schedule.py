"""Learning-rate schedules as pure functions of the step: the factor that multiplies the peak rate.

- cosine: linear warmup, then a half cosine from 1 down to `floor` (Loshchilov & Hutter 2017, SGDR);
- wsd: warmup, a stable phase at 1, then a linear decay to `floor` over the last `decay` fraction of the steps
  (warmup-stable-decay, Hu et al. 2024, "MiniCPM", arXiv 2404.06395);
- linear: warmup, then linear down to `floor`; constant: warmup, then 1.
"""

from __future__ import annotations

import math


def lr_factor(step: int, steps: int, schedule: str, *, warmup: float, floor: float, decay: float = 0.2) -> float:
    """Factor of the peak learning rate at optimizer step `step` (0-based) of `steps`."""
    warm = int(warmup * steps)
    if step < warm:
        return (step + 1) / (warm + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        start = steps - max(1, round(decay * steps))
        if step < start:
            return 1.0
        progress = (step - start + 1) / max(1, steps - start)
        return 1.0 - (1.0 - floor) * min(1.0, progress)
    progress = (step - warm + 1) / max(1, steps - warm)  # (0, 1] after warmup
    progress = min(1.0, progress)
    if schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    if schedule == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"Unknown schedule '{schedule}'")

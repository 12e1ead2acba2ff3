"""The training engine: one seeded, resumable loop (Trainer) with plug-ins for masks, gates and data mixtures."""

from .config import TrainConfig
from .trainer import Trainer, TrainPlugin, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainPlugin", "TrainResult"]

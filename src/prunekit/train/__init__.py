"""The training engine: one seeded, resumable loop (Trainer) with plug-ins for masks, gates and data mixtures.
Importing the package is light (the options are read when a recipe is validated); torch loads with Trainer."""

from .config import TrainConfig

__all__ = ["TrainConfig", "Trainer", "TrainPlugin", "TrainResult"]


def __getattr__(name: str):
    if name in ("Trainer", "TrainPlugin", "TrainResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(name)

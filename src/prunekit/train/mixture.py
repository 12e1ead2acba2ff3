"""Dynamic batch loading (Sheared-LLaMA, Xia et al. 2024, arXiv 2310.06694, Algorithm 1): after each validation,
corpora whose loss lags furthest behind a reference get more of the next batches.

With per-corpus validation losses L, reference losses L_ref (here the dense model's, the quality recovery aims
at) and current weights w: Δ = max(L - L_ref, 0); w <- softmax(log w + η Δ); then smoothed towards uniform,
w <- (1 - c) w + c / k, so no corpus is ever starved (c = 1e-4 in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .trainer import Trainer, TrainPlugin


def update_weights(weights: Sequence[float], losses: Sequence[float], reference: Sequence[float], *,
                   eta: float = 1.0, smoothing: float = 1e-4) -> list[float]:
    """The next mixture weights from the current ones and the per-corpus losses (all of length k)."""
    w = torch.tensor(weights, dtype=torch.float64)
    delta = (torch.tensor(losses, dtype=torch.float64) - torch.tensor(reference, dtype=torch.float64)).clamp_min(0)
    w = torch.softmax(torch.log(w / w.sum()) + eta * delta, dim=0)
    w = (1.0 - smoothing) * w + smoothing / len(w)
    return w.tolist()


class DynamicMixture(TrainPlugin):
    """Re-weights the trainer's stream after every validation from metrics "val_loss/<corpus>"."""

    def __init__(self, corpora: Sequence[str], reference: dict[str, float], *, eta: float = 1.0,
                 smoothing: float = 1e-4) -> None:
        self.corpora = list(corpora)
        self.reference = [reference[c] for c in self.corpora]
        self.eta, self.smoothing = eta, smoothing
        self.history: list[list[float]] = []

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        losses = [metrics[f"val_loss/{c}"] for c in self.corpora]
        trainer.stream.weights = update_weights(trainer.stream.weights, losses, self.reference, eta=self.eta,
                                                smoothing=self.smoothing)
        self.history.append(list(trainer.stream.weights))

    def state_dict(self) -> dict:
        return {"history": [list(w) for w in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [list(w) for w in state["history"]]

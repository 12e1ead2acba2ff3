"""Options of the training engine (light: importable without torch, read when a recipe is validated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError

SCHEDULES = ("cosine", "wsd", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


def check_ranges(owner: str, checks: list[tuple[str, object, bool, str]]) -> None:
    """Raise ConfigError for the first (name, value, ok, allowed) whose `ok` is False."""
    for name, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{owner} option {name} must be {allowed}, got {value!r}")


@dataclass
class TrainConfig:
    """A training run: budget, batches, optimiser (AdamW), learning-rate schedule, data, evaluation, checkpoints.

    tokens: the training budget (steps = ceil(tokens / (batch_size * seq_len))). batch_size windows of seq_len
    tokens per optimizer step, run as forward/backward passes of micro_batch_size windows (gradient
    accumulation). lr: peak learning rate; schedule: "cosine" (warmup, then cosine down to min_lr x lr),
    "wsd" (warmup, stable, then a linear decay over the last `decay` fraction of the steps, Hu et al. 2024
    MiniCPM), "linear" (warmup, then linear down to min_lr x lr) or "constant" (after warmup). warmup: fraction
    of the steps. max_grad_norm: gradient clipping (0 = off). corpus / weights: training data, bundled corpora
    or local .txt/.jsonl files mixed by weight (default equal); only the training part of each is read (the
    first 90% minus its last 5%, which is the validation split; the last 10% is the evaluation split that
    training never reads). eval_every: validation loss every N steps (0 = at the start and the end only), on
    eval_windows windows per corpus. checkpoint_every: steps between resumable checkpoints (0 = only on
    interrupt). seed: data order, adapter initialisation and dropout. precision: "fp32", or "bf16" (forward
    passes under bfloat16 autocast, weights and optimizer state in fp32; about 1.6x faster on CPUs with bf16
    instructions), or "auto" (bf16 where the CPU or GPU supports it, else fp32).
    """

    tokens: int = 100_000
    seq_len: int = 256
    batch_size: int = 8
    micro_batch_size: int = 2
    lr: float = 2e-4
    schedule: Literal["cosine", "wsd", "linear", "constant"] = "cosine"
    warmup: float = 0.05
    decay: float = 0.2
    min_lr: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    corpus: str | list[str] = field(default_factory=lambda: ["wiki"])
    weights: list[float] | None = None
    eval_every: int = 0
    eval_windows: int = 8
    checkpoint_every: int = 25
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        check_ranges("train", [
            ("tokens", self.tokens, self.tokens >= 1, "a positive number of training tokens"),
            ("seq_len", self.seq_len, self.seq_len >= 2, ">= 2"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("micro_batch_size", self.micro_batch_size,
             1 <= self.micro_batch_size <= self.batch_size and self.batch_size % self.micro_batch_size == 0,
             f"a divisor of batch_size ({self.batch_size})"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("schedule", self.schedule, self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("warmup", self.warmup, 0.0 <= self.warmup < 1.0, "in [0, 1)"),
            ("decay", self.decay, 0.0 < self.decay <= 1.0, "in (0, 1]"),
            ("min_lr", self.min_lr, 0.0 <= self.min_lr <= 1.0, "in [0, 1] (a fraction of lr)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("max_grad_norm", self.max_grad_norm, self.max_grad_norm >= 0, ">= 0 (0 = no clipping)"),
            ("eval_every", self.eval_every, self.eval_every >= 0, ">= 0"),
            ("eval_windows", self.eval_windows, self.eval_windows >= 1, ">= 1"),
            ("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 0, ">= 0"),
            ("corpus", self.corpus, len(self.corpus) >= 1, "a corpus name or a non-empty list"),
            ("precision", self.precision, self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ])
        from ..data import validate_corpus

        for i, name in enumerate(self.corpus):
            validate_corpus(name, f"corpus[{i}]")
        if self.weights is not None:
            if len(self.weights) != len(self.corpus) or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ConfigError(f"train option weights must be {len(self.corpus)} non-negative numbers (one per "
                                  f"corpus, not all zero), got {self.weights!r}")

    @property
    def steps(self) -> int:
        per_step = self.batch_size * self.seq_len
        return -(-self.tokens // per_step)

    @property
    def accumulation(self) -> int:
        return self.batch_size // self.micro_batch_size

"""Options of the one-shot weight pruning methods (light: importable without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from ..errors import ConfigError

WeightAllocation = Literal["uniform", "global", "owl", "rd"]
ALLOCATIONS = get_args(WeightAllocation)
DEFAULT_EXCLUDE = [r"(^|\.)lm_head$", r"embed", r"(^|\.)wte$", r"(^|\.)wpe$"]


def check_regexes(expressions: list[str]) -> None:
    """Raise ConfigError naming the first expression that is not a valid regular expression."""
    import re

    for expr in expressions:
        try:
            re.compile(expr)
        except re.error as exc:
            raise ConfigError(f"Invalid regular expression '{expr}': {exc}") from exc


@dataclass
class WeightPruneConfig:
    """Unstructured or N:M pruning of every Linear-like layer matched by `include` and not `exclude`.

    ratio: fraction of weights removed, in [0, 1) (the old name `sparsity` still works). pattern:
    "unstructured" or "N:M" (e.g. "2:4", N non-zeros kept in every M consecutive inputs). allocation: how
    the total is spread over layers (uniform, global threshold, OWL, RD). owl_threshold / owl_lambda: OWL's M
    and lambda. rd_samples / rd_seq_len: calibration windows (and their length) used to measure RD distortion curves.
    batch_size: calibration windows per forward pass in allocation passes. max_batch_tokens: when the
    calibration set has at most this many tokens, all windows go through a block at once and every
    layer is calibrated on the outputs of the already pruned layers before it (one pass per block);
    larger sets go in chunks, with each block's layers calibrated on the dense block (two passes).
    """

    RENAMED: ClassVar[dict[str, str]] = {"sparsity": "ratio"}

    ratio: float = 0.5
    pattern: str = "unstructured"
    allocation: WeightAllocation = "uniform"
    include: list[str] = field(default_factory=lambda: [".*"])
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    owl_threshold: float = 5.0
    owl_lambda: float = 0.08
    rd_samples: int = 2
    rd_seq_len: int = 64
    batch_size: int = 2
    max_batch_tokens: int = 32768

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"ratio (the fraction of weights removed) must be in [0, 1), got {self.ratio}")
        if self.pattern != "unstructured":
            _ = self.nm  # validates "N:M"
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"Unknown allocation '{self.allocation}'. Valid choices: {', '.join(ALLOCATIONS)}.")
        if self.pattern != "unstructured" and self.allocation != "uniform":
            raise ConfigError(f"pattern {self.pattern} fixes the sparsity of every layer; use allocation: uniform")
        check_regexes(self.include + self.exclude)

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M pattern, None when unstructured."""
        if self.pattern == "unstructured":
            return None
        parts = self.pattern.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"pattern must be 'unstructured' or 'N:M' like '2:4', got '{self.pattern}'")
        n, m = int(parts[0]), int(parts[1])
        if not 1 <= n <= m:
            raise ConfigError(f"N:M pattern needs 1 <= N <= M, got N={n}, M={m}")
        return n, m


@dataclass
class SparseGPTConfig(WeightPruneConfig):
    """SparseGPT options: Hessian dampening (fraction of the mean diagonal) and lazy block size.

    dense_targets: asymmetric calibration (GPTAQ, arXiv 2504.02692), in [0, 1]: the weight of the dense
    model's outputs (on the dense inputs) in each layer's target, the rest being the layer's own outputs on
    the inputs it now receives (0: plain SparseGPT). Default 0.25, GPTAQ's own weight; on SmolLM2-135M at 50%
    it lowers perplexity by about 12% (BENCHMARKS.md). Above 0 it costs one extra forward pass of every block
    on the dense hidden states.
    """

    damp: float = 0.01
    block_size: int = 128
    dense_targets: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.damp <= 0 or self.block_size < 1:
            raise ConfigError(f"damp must be > 0 and block_size >= 1, got {self.damp}, {self.block_size}")
        if not 0.0 <= self.dense_targets <= 1.0:
            raise ConfigError(f"dense_targets must be in [0, 1] (the weight of the dense outputs in each "
                              f"layer's target; 0 = plain SparseGPT), got {self.dense_targets}")

"""Options of the recovery stage (light: importable without torch, read when a recipe is validated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from ..prune.config import DEFAULT_EXCLUDE, check_regexes
from ..train.config import TrainConfig, check_ranges

METHODS = ("lora", "full")
DIVERGENCES = ("fkl", "rkl", "jsd")
LOSSES = ("ce",) + DIVERGENCES
REPORT_CORPORA = ["wiki", "news", "shakespeare"]
SELECTORS = ("all", "random", "paser")


@dataclass
class RecoverConfig(TrainConfig):
    """Fine-tune a pruned model so it heals, keeping every pruned weight at zero.

    method: "lora" (peft LoRA adapters of rank `rank`, scale alpha / rank, dropout `dropout`, merged into the
    weights at the end) or "full" (the weights themselves). include / exclude: regexes over module names that
    choose the Linear-like layers trained (embeddings and the LM head are left out by default). loss: "ce"
    (next-token cross-entropy) or a distillation divergence from the teacher (the dense model): "fkl", "rkl",
    "jsd", mixed as (1 - distill) x CE + distill x divergence at `temperature`, over the teacher's `top_k`
    logits per token (0 = the whole vocabulary). mask_min_sparsity: a layer with at least this fraction of zero
    weights keeps exactly those zeros (LoRA: the update is M * (B A) in training and in the merge; full: masked
    gradients and re-zeroed weights). report_corpora / report_windows: perplexity before and after recovery
    on the evaluation split of these corpora (windows of 512 tokens; 0 windows = skip). select: the training
    windows: "all" (every window of the corpora, mixed by weight), or a pool of select_tokens tokens (0 = the whole
    budget) taken from paser_candidates candidate windows (0 = 4x the pool) drawn from the corpora by weight:
    "random" (a seeded random subset) or "paser" (PASER, He et al. 2025: MiniLM embeddings, paser_clusters spectral
    clusters, budget by each cluster's JSD between the pruned and the dense model; see recover/paser.py).
    mix: "fixed" (the corpora's weights throughout) or "dynamic" (Sheared-LLaMA dynamic batch loading: after each
    validation, every eval_every steps, weights move towards corpora whose validation loss lags furthest behind
    the dense model's, with step size mix_eta and smoothing mix_smoothing; train/mixture.py).
    Training options (tokens, lr, schedule, corpus, ...) are those of prunekit.train.TrainConfig.
    """

    method: Literal["lora", "full"] = "lora"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    include: list[str] = field(default_factory=lambda: [".*"])
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    loss: Literal["ce", "fkl", "rkl", "jsd"] = "ce"
    distill: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    mask_min_sparsity: float = 0.01
    report_corpora: list[str] = field(default_factory=lambda: list(REPORT_CORPORA))
    report_windows: int = 4
    select: Literal["all", "random", "paser"] = "all"
    select_tokens: int = 0
    paser_clusters: int = 8
    paser_candidates: int = 0
    mix: Literal["fixed", "dynamic"] = "fixed"
    mix_eta: float = 1.0
    mix_smoothing: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges("recover", [
            ("method", self.method, self.method in METHODS, f"one of {', '.join(METHODS)}"),
            ("rank", self.rank, self.rank >= 1, "a positive integer"),
            ("alpha", self.alpha, self.alpha > 0, "> 0"),
            ("dropout", self.dropout, 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("loss", self.loss, self.loss in LOSSES, f"one of {', '.join(LOSSES)}"),
            ("distill", self.distill, 0.0 < self.distill <= 1.0, "in (0, 1] (the weight of the divergence)"),
            ("temperature", self.temperature, self.temperature > 0, "> 0"),
            ("top_k", self.top_k, self.top_k >= 0, ">= 0 (0 = the whole vocabulary)"),
            ("mask_min_sparsity", self.mask_min_sparsity, 0.0 < self.mask_min_sparsity <= 1.0, "in (0, 1]"),
            ("report_windows", self.report_windows, self.report_windows >= 0, ">= 0"),
            ("select", self.select, self.select in SELECTORS, f"one of {', '.join(SELECTORS)}"),
            ("select_tokens", self.select_tokens, self.select_tokens == 0 or self.select_tokens >= self.seq_len,
             f"0 (the whole budget) or at least seq_len ({self.seq_len}) tokens"),
            ("paser_clusters", self.paser_clusters, self.paser_clusters >= 1, "a positive integer"),
            ("paser_candidates", self.paser_candidates, self.paser_candidates >= 0,
             ">= 0 (0 = 4x the selected windows)"),
        ])
        if self.select != "all" and self.paser_candidates and self.paser_candidates < self.selected_windows:
            raise ConfigError(f"recover option paser_candidates must be 0 or at least the {self.selected_windows} "
                              f"windows selected (select_tokens {self.select_tokens or self.tokens} / seq_len "
                              f"{self.seq_len}), got {self.paser_candidates}")
        check_ranges("recover", [
            ("mix", self.mix, self.mix in ("fixed", "dynamic"), "fixed or dynamic"),
            ("mix_eta", self.mix_eta, self.mix_eta > 0, "> 0"),
            ("mix_smoothing", self.mix_smoothing, 0.0 <= self.mix_smoothing < 1.0, "in [0, 1)"),
        ])
        if self.mix == "dynamic" and (len(self.corpus) < 2 or self.eval_every < 1):
            raise ConfigError(f"recover option mix: dynamic re-weights corpora after each validation: it needs at "
                              f"least two corpora and eval_every >= 1, got corpus {self.corpus} and eval_every "
                              f"{self.eval_every}")
        check_regexes(self.include + self.exclude)
        from ..data import validate_corpus

        for i, name in enumerate(self.report_corpora):
            validate_corpus(name, f"report_corpora[{i}]")
        if not self.include:
            raise ConfigError("recover option include must name at least one regex (default: ['.*'])")
        import importlib.util

        if self.method == "lora" and importlib.util.find_spec("peft") is None:
            raise ConfigError("recover method 'lora' needs the peft package: pip install 'prunekit[recover]' "
                              "(or use method: full)")

    @property
    def needs_teacher(self) -> bool:
        """The dense model is needed: as the teacher of a distillation loss, to score windows for PASER, or for the
        reference losses of dynamic mixing."""
        return self.loss != "ce" or self.select == "paser" or self.mix == "dynamic"

    @property
    def selected_windows(self) -> int:
        """Windows in the selected pool (select random / paser)."""
        return -(-(self.select_tokens or self.tokens) // self.seq_len)

    @property
    def candidate_windows(self) -> int:
        return self.paser_candidates or 4 * self.selected_windows

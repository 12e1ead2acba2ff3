"""Recipe schema. Every name (model, corpus, stage, method) is resolved here, before weights load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown_name
from ..evaluate.needle import NeedleConfig


@dataclass
class CalibrationConfig:
    """Calibration batches: random windows from the calibration split (first 90% of the corpus). corpus: one
    name or file, or a list of them (a mixture); weights: each listed corpus's share of the samples (default
    equal; normalised)."""

    corpus: str | list[str] = "wiki"
    samples: int = 32
    seq_len: int = 512
    seed: int = 0
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        if self.samples < 1 or self.seq_len < 2:
            raise ConfigError(f"calibration needs samples >= 1 and seq_len >= 2, got {self.samples}, {self.seq_len}")
        corpora = [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)
        if not corpora:
            raise ConfigError("calibration.corpus is an empty list; give a corpus name or a list of them")
        if self.weights is not None and (len(self.weights) != len(corpora) or any(w < 0 for w in self.weights)
                                         or sum(self.weights) <= 0):
            raise ConfigError(f"calibration.weights must be {len(corpora)} non-negative numbers (one per corpus, "
                              f"not all 0), got {self.weights}")


@dataclass
class PerplexityConfig:
    """See prunekit.evaluate.perplexity for the protocol."""

    corpus: str = "wiki"
    window: int = 1024
    windows: int = 16
    batch_size: int = 1


@dataclass
class EfficiencyConfig:
    """Prefill latency (time to first token) and decode speed; medians of `repeats` runs."""

    prefill_tokens: int = 512
    decode_tokens: int = 16
    repeats: int = 3
    macs_seq_len: int = 1024


@dataclass
class EvaluationConfig:
    tasks: list[str] = field(default_factory=lambda: ["perplexity", "efficiency"])
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    needle: NeedleConfig = field(default_factory=NeedleConfig)


@dataclass
class Variant:
    """A named pipeline of stages applied to a fresh copy of the dense model, or to `model` (a saved, e.g.
    already pruned, model: a folder or name) when given, so it is compared with the recipe's model."""

    name: str
    stages: list[Any]  # prunekit.recipe.stages.Stage
    model: str | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "stages": [s.to_dict() for s in self.stages]}
        return out if self.model is None else {"name": self.name, "model": self.model, **out}


@dataclass
class Recipe:
    name: str = "run"
    model: str = "smollm2-135m"
    output: str | None = None
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    variants: list[Variant] = field(default_factory=list)

    def to_dict(self) -> dict:
        from ..core.typed import to_dict

        return {
            "name": self.name, "model": self.model, "output": self.output,
            "calibration": to_dict(self.calibration), "evaluation": to_dict(self.evaluation),
            "variants": [v.to_dict() for v in self.variants],
        }


def validate_names(recipe: Recipe) -> None:
    """Resolve model, corpora and task names (stage and method names are resolved while parsing)."""
    from ..data import validate_corpus
    from ..evaluate.tasks import TASKS
    from ..models import validate_spec

    validate_spec(recipe.model)
    for i, variant in enumerate(recipe.variants):
        if variant.model is not None:
            validate_spec(variant.model, f"variants[{i}].model")
    corpora = recipe.calibration.corpus
    for i, corpus in enumerate([corpora] if isinstance(corpora, str) else corpora):
        validate_corpus(corpus, "calibration.corpus" + ("" if isinstance(corpora, str) else f"[{i}]"))
    validate_corpus(recipe.evaluation.perplexity.corpus, "evaluation.perplexity.corpus")
    for i, task in enumerate(recipe.evaluation.tasks):
        if task not in TASKS:
            raise unknown_name("task", task, TASKS.names(), f"evaluation.tasks[{i}]")
    seen = set()
    for i, variant in enumerate(recipe.variants):
        if variant.name in seen or variant.name == "dense":
            raise ConfigError(f"Variant name '{variant.name}' at 'variants[{i}]' is reserved or used twice.")
        seen.add(variant.name)

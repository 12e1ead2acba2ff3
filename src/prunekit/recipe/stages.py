"""Stage kinds of a recipe variant and how each one's options are validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.typed import from_dict
from ..errors import ConfigError, unknown_name
from ..registry import Registry
from .schema import Variant

STAGES = Registry("stage")


@dataclass
class Stage:
    """One resolved stage: its kind (prune, save, ...) and its validated options object."""

    kind: str
    options: Any

    def to_dict(self) -> dict:
        from ..core.typed import to_dict

        return {self.kind: to_dict(self.options)}


@dataclass
class SaveOptions:
    """Save the model of this variant as a Hugging Face folder inside the run's output folder."""

    safe_serialization: bool = True


@dataclass
class PruneOptions:
    """A pruning method and its validated options."""

    method: str
    config: Any

    def to_dict(self) -> dict:
        from ..core.typed import to_dict

        return {"method": self.method, **to_dict(self.config)}


def _parse_prune(data: Any, where: str) -> PruneOptions:
    from ..methods import METHODS

    if not isinstance(data, dict) or "method" not in data:
        raise ConfigError(f"'{where}' needs a 'method'. Valid methods: {', '.join(METHODS.names())}.")
    options = dict(data)
    method = options.pop("method")
    entry = METHODS.get(str(method), f"{where}.method")
    return PruneOptions(entry.name, from_dict(entry.config, options, where))


@dataclass
class PressOptions:
    """An inference-time press (prunekit.runtime) that the variant's evaluation runs inside."""

    name: str
    options: dict

    def build(self) -> Any:
        from ..runtime.registry import make_press

        return make_press(self.name, **self.options)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.options}


def _parse_press(data: Any, where: str) -> PressOptions:
    from ..runtime.registry import PRESSES, renamed_options

    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"'{where}' needs a 'name'. Valid presses: {', '.join(PRESSES.names())}.")
    options = dict(data)
    name = str(options.pop("name"))
    PRESSES.get(name, f"{where}.name")
    parsed = PressOptions(name, renamed_options(name, options, where))  # old names warn here, once
    parsed.build()  # validates every option before any weights load
    return parsed


STAGES.register("prune", _parse_prune, summary="prune the model with a registered method")
STAGES.register("press", _parse_press,
                summary="evaluate this variant inside an inference-time press (prunekit list presses)")
STAGES.register("recover", lambda data, where: _recover_options(data, where),
                summary="heal the pruned model: LoRA (peft) or full fine-tuning, CE or distillation from dense")
STAGES.register("save", lambda data, where: from_dict(SaveOptions, data, where),
                summary="save the model as a Hugging Face folder (weights, plan, resolved recipe)")


def _recover_options(data: Any, where: str) -> Any:
    from ..recover.config import RecoverConfig

    return from_dict(RecoverConfig, data, where)


def parse_stage(data: Any, where: str) -> Stage:
    if not isinstance(data, dict) or len(data) != 1:
        raise ConfigError(
            f"'{where}' must be a mapping with exactly one stage kind ({', '.join(STAGES.names())}), got {data!r}"
        )
    ((kind, options),) = data.items()
    if kind not in STAGES:
        raise unknown_name("stage", kind, STAGES.names(), where)
    return Stage(kind, STAGES.load(kind)(options, f"{where}.{kind}"))


def parse_variant(data: Any, where: str) -> Variant:
    if not isinstance(data, dict):
        raise ConfigError(f"'{where}' must be a mapping with 'name' and 'stages', got {data!r}")
    unknown = set(data) - {"name", "stages", "model"}
    if unknown:
        raise ConfigError(f"Unknown key '{sorted(unknown)[0]}' in '{where}'. Valid keys: name, stages, model.")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"'{where}.name' must be a non-empty name without '/', got {name!r}")
    stages = data.get("stages") or []
    if not isinstance(stages, list):
        raise ConfigError(f"'{where}.stages' must be a list, got {stages!r}")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"'{where}.model' must be a model name or folder, got {model!r}")
    return Variant(name, [parse_stage(s, f"{where}.stages[{i}]") for i, s in enumerate(stages)], model)

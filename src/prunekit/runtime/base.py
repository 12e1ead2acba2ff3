"""Press: an inference-time modification of a Hugging Face decoder, active only inside `with press(model):`.

The design follows the "press" idea of NVIDIA's kvpress (hooks that act on a model during `generate`), written
from scratch for transformers 5 (`cache=` argument, `DynamicCache.layers`). A press installs forward hooks through
`prunekit.utils.hooks.HookSet` and/or an attention function through `AttentionInterface`; everything is removed
in `finally`, so an exception inside the block leaves the model bit-identical to before.

Capability flags (class variables) describe what a press does, so composition checks never use isinstance:
`modifies_cache` (evicts KV entries), `drops_tokens` (shortens the hidden states), `replaces_attention`
(installs an attention function; these chain, each wrapping the previous one) and `per_layer_ratios`
(accepts a `layer_ratios` mapping, see PerLayerPress).

The shared knob is `ratio`, the fraction of the press's work REMOVED, as `ratio` is in every prunekit method. Its old
(kvpress) name `compression_ratio` still works, with a RenamedOptionWarning, wherever a press class lists it in
`RENAMED` (every press with a `ratio`): as a constructor keyword and attribute (`PressType`) and as an option of
`make_press` / a recipe stage.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..core.typed import RenamedOptionWarning
from ..errors import ConfigError
from ..utils.hooks import HookSet

DECODER_TYPES: tuple[str, ...] = ("gpt2", "llama", "mistral", "qwen2", "qwen3")


def validate_ratio(value: float, name: str = "ratio") -> float:
    """A fraction of entries removed: must be in [0, 1)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


# --- old option names ----------------------------------------------------------------------------------------------
RENAMED_RATIO: dict[str, str] = {"compression_ratio": "ratio"}  # the `RENAMED` of every press with a `ratio`


def renamed_message(old: str, new: str) -> str:
    return (f"{old} is renamed {new} (the removed fraction has one name in every method); the old name still works "
            "for now")


def _renamed_property(old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warnings.warn(renamed_message(old, new), RenamedOptionWarning, stacklevel=2)
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warnings.warn(renamed_message(old, new), RenamedOptionWarning, stacklevel=2)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated: the old name of `{new}`.")


def _new_names(cls: type, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords of `cls` with its old names (`RENAMED`) replaced by the new ones."""
    fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
    positional = [f.name for f in fields if f.init and not f.kw_only][:len(args)]
    out = dict(kwargs)
    for old, new in cls.RENAMED.items():  # type: ignore[attr-defined]
        if old not in out:
            continue
        if new in out or new in positional:
            raise ConfigError(f"{cls.__name__} got both {old} and {new}; {old} is the old name of {new}: give only "
                              f"{new}")
        warnings.warn(renamed_message(old, new), RenamedOptionWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out


class PressType(type):
    """Metaclass of the presses: the old option names of a press class's `RENAMED` ({old: new}) keep working.
    `Cls(old=v)` warns RenamedOptionWarning and builds `Cls(new=v)` (both given, by keyword or position: ConfigError),
    and `press.old` reads and sets `press.new` with the same warning. Done here, not with a dataclass InitVar, so the
    dataclass fields stay as they are (repr, ==, `dataclasses.replace`, `press_options`) and a KV press given
    `ratio=0.5` (its default) and `compression_ratio` is still caught."""

    def __init__(cls, name: str, bases: tuple, namespace: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, bases, namespace, **kwargs)
        for old, new in namespace.get("RENAMED", {}).items():
            setattr(cls, old, _renamed_property(old, new))

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if any(old in kwargs for old in getattr(cls, "RENAMED", {})):
            kwargs = _new_names(cls, args, kwargs)
        return super().__call__(*args, **kwargs)

    @property
    def __signature__(cls) -> inspect.Signature:
        """The dataclass __init__'s, without self (`inspect.signature` would otherwise show `__call__`'s)."""
        signature = inspect.signature(cls.__init__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])


def model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def num_layers(model: nn.Module) -> int:
    config = model.config
    for key in ("num_hidden_layers", "n_layer"):
        if getattr(config, key, None) is not None:
            return int(getattr(config, key))
    raise ConfigError(f"cannot read the layer count of model type '{model_type(model)}'")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks, found by structure (Llama family: model.model.layers, GPT-2: model.transformer.h; the
    bare base models too)."""
    for path in (("model", "layers"), ("transformer", "h"), ("layers",), ("h",)):
        node: Any = model
        for attr in path:
            node = getattr(node, attr, None)
        if node is not None:
            return list(node)
    raise ConfigError(f"cannot find the decoder blocks of {type(model).__name__}")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Self-attention module of every block, in layer order (`layer_idx` must match the position)."""
    modules = []
    for index, block in enumerate(decoder_layers(model)):
        module = getattr(block, "self_attn", None) or getattr(block, "attn", None)
        if module is None:
            raise ConfigError(f"block {index} of {type(model).__name__} has no self_attn/attn module")
        modules.append(module)
    return modules


@dataclass
class Press(metaclass=PressType):
    """Base press. Subclasses implement `install(model, hooks, stack)`; use as `with press(model): ...`."""

    supported_model_types: ClassVar[tuple[str, ...]] = DECODER_TYPES
    modifies_cache: ClassVar[bool] = False
    drops_tokens: ClassVar[bool] = False
    replaces_attention: ClassVar[bool] = False
    per_layer_ratios: ClassVar[bool] = False
    RENAMED: ClassVar[dict[str, str]] = {}  # old option name -> new (RENAMED_RATIO on presses with `ratio`)

    def supports(self, model: nn.Module) -> None:
        """Raise ValueError when `model`'s architecture is not one this press handles."""
        found = model_type(model)
        if found not in self.supported_model_types:
            raise ConfigError(
                f"press {type(self).__name__} does not support model type {found!r}; supported: "
                f"{', '.join(self.supported_model_types)}"
            )

    def validate(self, model: nn.Module) -> None:
        """Check settings against the model (layer indices etc.); called before anything is installed."""

    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear per-run state (called on entering the context)."""

    @contextmanager
    def __call__(self, model: nn.Module) -> Iterator[Press]:
        self.supports(model)
        self.validate(model)
        self.reset()
        hooks = HookSet()
        with ExitStack() as stack:
            try:
                self.install(model, hooks, stack)
                yield self
            finally:
                hooks.remove()


@dataclass
class PerLayerPress(Press):
    """Run `press` with a per-layer compression ratio (layers not listed use the press's own ratio)."""

    press: Press = field(default_factory=Press)
    ratios: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not getattr(self.press, "per_layer_ratios", False):
            raise ConfigError(
                f"press {type(self.press).__name__} does not accept per-layer ratios; use a KV-cache press "
                "(prunekit list presses: kind kv)"
            )
        self.ratios = {int(k): validate_ratio(v, f"ratios[{k}]") for k, v in dict(self.ratios).items()}

    @property
    def supported_model_types(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.press.supported_model_types

    def validate(self, model: nn.Module) -> None:
        count = num_layers(model)
        bad = [k for k in self.ratios if not 0 <= k < count]
        if bad:
            raise ConfigError(f"ratios name layers {bad} but the model has layers 0..{count - 1}")

    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        previous = getattr(self.press, "layer_ratios", None)
        self.press.layer_ratios = dict(self.ratios)
        stack.callback(setattr, self.press, "layer_ratios", previous)
        stack.enter_context(self.press(model))


@dataclass
class ComposedPress(Press):
    """Apply several presses together (entered in order, removed in reverse)."""

    presses: Sequence[Press] = ()

    def __post_init__(self) -> None:
        structural = [type(p).__name__ for p in self.presses if p.modifies_cache or p.drops_tokens]
        if len(structural) > 1:
            raise ConfigError(
                f"presses {structural} both change which tokens or cache entries exist; compose at most one of them "
                "with any number of attention presses (delta, hip)"
            )

    def supports(self, model: nn.Module) -> None:
        for press in self.presses:
            press.supports(model)

    def validate(self, model: nn.Module) -> None:
        for press in self.presses:
            press.validate(model)

    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        for press in self.presses:
            stack.enter_context(press(model))

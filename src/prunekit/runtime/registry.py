"""The catalogue of inference-time presses: name -> press class (imported lazily) and a one-line summary.

`make_press(name, **options)` builds a press after checking every option against the class's fields: unknown
keys, wrong types and out-of-range values raise ConfigError naming the option and the valid choices. Values from
text formats are accepted where unambiguous: a `schedule` may have string layer keys ("8": 0.6), sequences may be
lists or tuples. Listing names imports nothing from torch.

Every press accepts the shared knob `ratio` in [0, 1) (what `prunekit eval --press-ratio` passes), the fraction of
the press's work removed, as `ratio` is in every prunekit method: KV entries after prefill (KV presses, default 0.5),
prompt-token work averaged over layers (lazyllm, mapped to a schedule), entries attended per decode step (delta) or
keys gathered per prefill query (hip), each a fraction of the current length; and every press changes the
computation with its defaults (tests/runtime/test_press_contract.py walks this registry). Its old (kvpress) name
`compression_ratio` still works with a RenamedOptionWarning: a press class's `RENAMED` ({old: new}) is applied to
the options (`renamed_options`) before they are checked.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ..core.typed import coerce, renamed_keys
from ..errors import ConfigError
from ..registry import Registry

PRESSES = Registry("press")
_KV = "prunekit.runtime.kv"
PRESSES.register("streamingllm", f"{_KV}.streaming:StreamingLLMPress", kind="kv",
                 summary="KV cache: keep n_sink first + most recent entries after prefill (Xiao et al. 2023)")
PRESSES.register("h2o", f"{_KV}.h2o:H2OPress", kind="kv",
                 summary="KV cache: keep heavy hitters by accumulated prompt attention (Zhang et al. 2023)")
PRESSES.register("snapkv", f"{_KV}.snapkv:SnapKVPress", kind="kv",
                 summary="KV cache: keep entries the last prompt window attends to, pooled (Li et al. 2024)")
PRESSES.register("knorm", f"{_KV}.knorm:KeyNormPress", kind="kv",
                 summary="KV cache: keep the lowest key L2 norms, query-free (Devoto et al. 2024)")
PRESSES.register("tova", f"{_KV}.tova:TOVAPress", kind="kv",
                 summary="KV cache: keep the entries the last prompt query attends to most (Oren et al. 2024)")
PRESSES.register("lazyllm", "prunekit.runtime.tokens.lazyllm:LazyLLMPress", kind="tokens",
                 summary="prefill: drop prompt tokens layer by layer, revive them on demand (Fu et al. 2024)")
PRESSES.register("delta", "prunekit.runtime.attention.delta:DeltaPress", kind="attention",
                 summary="decode: sparse layers attend to pages picked by a few dense layers (Zeng et al. 2025)")
PRESSES.register("hip", "prunekit.runtime.attention.hip:HipPress", kind="attention",
                 summary="prefill: attention over key blocks found by a hierarchical search (Lee et al. 2024)")

_INTERNAL = {"layer_ratios"}  # set by PerLayerPress, not a user option


def press_options(name: str) -> dict[str, Any]:
    """Option name -> default of press `name` (what `make_press` accepts)."""
    cls = PRESSES.load(name)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name in _INTERNAL:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def renamed_options(name: str, options: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """`options` of press `name` with old option names (the class's `RENAMED`, e.g. compression_ratio -> ratio)
    replaced by the new ones, with a RenamedOptionWarning naming `where` (default: the press name); giving an old
    and its new name together is a ConfigError."""
    PRESSES.get(name)  # unknown names: ConfigError listing the valid ones
    return renamed_keys(PRESSES.load(name), dict(options), where or name)


def make_press(name: str, **options: Any) -> Any:
    """Build press `name` with `options` checked against its fields (ConfigError on anything invalid)."""
    options = renamed_options(name, options)
    cls = PRESSES.load(name)
    valid = press_options(name)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise ConfigError(f"Unknown option '{unknown[0]}' for press '{name}'. Valid options: "
                          f"{', '.join(sorted(valid))}.")
    hints = typing.get_type_hints(cls)
    values = {key: coerce(hints.get(key, Any), value, f"{name}.{key}") for key, value in options.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"Invalid options for press '{name}': {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid options for press '{name}': {exc}") from exc

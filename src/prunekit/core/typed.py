"""Strict conversion of plain data (from YAML) into dataclasses: unknown keys and wrong types fail."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, naming the path of any bad key or value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{where}' must be a mapping of options, got {type(data).__name__}: {data!r}")
    data = renamed_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ConfigError(
            f"Unknown key '{unknown[0]}' in '{where}'. Valid keys: {', '.join(sorted(fields))}."
        )
    values = {name: coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (at '{where}')") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid '{where}': {exc}") from exc


class RenamedOptionWarning(FutureWarning):
    """An option was given by its old name (shown to users by default, unlike DeprecationWarning)."""


def renamed_keys(cls: type, data: dict, where: str) -> dict:
    """`data` with old option names (a dataclass's `RENAMED = {old: new}`) replaced by the new ones, warning once
    per use; giving both names is an error."""
    renamed = getattr(cls, "RENAMED", {})
    if not any(old in data for old in renamed):
        return data
    import warnings

    out = dict(data)
    for old, new in renamed.items():
        if old in out:
            if new in out:
                raise ConfigError(f"'{where}' gives both '{old}' and '{new}'; '{old}' is the old name of '{new}'")
            warnings.warn(f"'{where}.{old}' is renamed '{new}' (the removed fraction has one name in every method); "
                          f"the old name still works for now", RenamedOptionWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


def coerce(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against a type hint (bool, int, float, str, Literal, lists / sequences, mappings with typed
    keys and values, dataclasses, unions); text keys of int-keyed mappings are parsed."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"'{where}' has an invalid value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"'{where}' must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence) or hint is Sequence:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        item = (typing.get_args(hint) or (Any,))[0]
        return [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or hint is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        out = {}
        for key, item in value.items():
            if key_hint is int and isinstance(key, str) and key.strip().lstrip("-").isdigit():
                key = int(key)  # layer indices written as text keys ("8": 0.5)
            out[coerce(key_hint, key, f"{where} key")] = coerce(value_hint, item, f"{where}[{key}]")
        return out
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{where}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{where}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{where}' must be a string, got {value!r}")
        return value
    return value


def to_dict(obj: Any) -> Any:
    """Plain data (for YAML / JSON) from a dataclass tree."""
    if dataclasses.is_dataclass(obj):
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj

"""Load a recipe from YAML, apply `--set key=value` overrides, validate and resolve every name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..core.typed import from_dict
from ..errors import ConfigError
from .schema import CalibrationConfig, EvaluationConfig, Recipe, validate_names
from .stages import parse_variant


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file. Fails before any weights load."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Recipe file '{path}' does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"Recipe '{path}' is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Recipe '{path}' must be a mapping at the top level, got {type(data).__name__}.")
    data.setdefault("name", path.stem)
    return parse_recipe(apply_overrides(data, overrides or []))


def parse_recipe(data: dict[str, Any]) -> Recipe:
    """Validate plain data into a Recipe (the inverse of Recipe.to_dict)."""
    allowed = {"name", "model", "output", "calibration", "evaluation", "variants"}
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(
            f"Unknown top-level key '{unknown[0]}' in the recipe. Valid keys: {', '.join(sorted(allowed))}.")
    variants = data.get("variants") or []
    if not isinstance(variants, list):
        raise ConfigError(f"'variants' must be a list, got {variants!r}")
    recipe = Recipe(
        name=str(data.get("name", "run")),
        model=str(data.get("model", "smollm2-135m")),
        output=data.get("output"),
        calibration=from_dict(CalibrationConfig, data.get("calibration"), "calibration"),
        evaluation=from_dict(EvaluationConfig, data.get("evaluation"), "evaluation"),
        variants=[parse_variant(v, f"variants[{i}]") for i, v in enumerate(variants)],
    )
    validate_names(recipe)
    return recipe


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.0.c=value` assignments; values are parsed as YAML scalars or lists."""
    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Override '{item}' must look like key.path=value")
        value = yaml.safe_load(raw) if raw else ""
        node: Any = data
        parts = key.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"Override '{item}': '{part}' is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"Override '{item}': '{'.'.join(parts[:depth])}' is not a mapping or list")
    return data

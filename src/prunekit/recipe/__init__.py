"""Recipes: validated YAML that says what to load, how to prune, and how to evaluate."""

from .load import apply_overrides, load_recipe, parse_recipe
from .schema import CalibrationConfig, EfficiencyConfig, EvaluationConfig, Recipe, Variant
from .stages import Stage

__all__ = ["load_recipe", "parse_recipe", "apply_overrides", "Recipe", "Variant", "Stage",
           "CalibrationConfig", "EvaluationConfig", "EfficiencyConfig"]

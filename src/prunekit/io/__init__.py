"""Save and load pruned models (a Hugging Face folder plus the plan and the resolved recipe)."""

from .save import save_model, saved_base

__all__ = ["save_model", "saved_base"]

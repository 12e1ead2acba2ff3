"""Model loading and architecture adapters."""

from .catalog import DEFAULT_MODEL, MODELS
from .load import LoadedModel, load, validate_spec

__all__ = ["DEFAULT_MODEL", "MODELS", "LoadedModel", "load", "validate_spec", "register_adapter"]


def __getattr__(name: str):
    if name in {"ADAPTERS", "register_adapter", "adapter_for", "supported_model_types", "ModelAdapter"}:
        from . import adapters

        return getattr(adapters, name)
    raise AttributeError(name)

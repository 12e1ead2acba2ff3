"""ModelAdapter: knows one architecture family; found from the model's config."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import nn

from ...errors import ConfigError
from ...registry import Registry

ADAPTERS = Registry("model adapter")  # family name -> adapter class; each class lists its `model_types`


def register_adapter(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Class decorator: register `cls` under its `family` for the model types it lists (each at most once)."""
    name = cls.family or cls.__name__.lower().removesuffix("adapter")
    taken = {t: other.__name__ for other in _adapter_classes() for t in other.model_types}
    clash = [t for t in cls.model_types if t in taken]
    if clash:
        raise ValueError(f"model type '{clash[0]}' already has an adapter ({taken[clash[0]]}); "
                         f"{cls.__name__} was not registered")
    kind = "causal-lm" if cls.is_causal_lm else "encoder"
    ADAPTERS.register(name, cls, summary=f"model types {', '.join(cls.model_types)}", kind=kind)
    return cls


def _adapter_classes() -> list[type[ModelAdapter]]:
    return [ADAPTERS.load(name) for name in ADAPTERS]


def supported_model_types() -> list[str]:
    return sorted({t for cls in _adapter_classes() for t in cls.model_types})


def adapter_for(model: nn.Module) -> ModelAdapter:
    """Pick the adapter whose `model_types` contains `model.config.model_type`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    for cls in _adapter_classes():
        if model_type in cls.model_types:
            return cls(model)
    raise ConfigError(
        f"No adapter for model type '{model_type}' ({type(model).__name__}). Supported model types: "
        f"{', '.join(supported_model_types())}. Register one with prunekit.models.register_adapter."
    )


class ModelAdapter(ABC):
    """Access to blocks, attention and MLP modules, and the head layout of one family."""

    model_types: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = ""
    is_causal_lm: ClassVar[bool] = True

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config

    # --- structure -------------------------------------------------------------------------------
    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        ...

    @abstractmethod
    def embeddings(self) -> list[nn.Module]:
        ...

    def head(self) -> nn.Module | None:
        return getattr(self.model, "lm_head", None)

    def final_norm(self) -> nn.Module | None:
        """The norm between the last block and the head (None when there is none)."""
        return None

    @abstractmethod
    def attention(self, block: nn.Module) -> nn.Module:
        ...

    @abstractmethod
    def mlp(self, block: nn.Module) -> nn.Module:
        ...

    def block_prefix(self, index: int) -> str:
        """Qualified module name of block `index` inside the model."""
        blocks = self.blocks()
        for name, module in self.model.named_modules():
            if module is blocks[index]:
                return name
        raise KeyError(index)

    # --- head layout -----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.blocks())

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.hidden_size // self.num_heads

    def sync_config(self) -> None:
        """Update size fields of the config after shapes change (structured pruning)."""
        return None

    def saveable_config(self) -> Any:
        """The config to write to disk: `self.config`, or a copy whose fields pass the family's own validation
        where pruned sizes break a rule the modules do not need (prunekit.models.load rebuilds the real
        shapes from the saved weights and syncs the config again)."""
        return self.config


def set_uniform_widths(config, widths: dict[str, list[int]]) -> None:
    """Set config.<field> for fields whose per-layer values are all equal; record all per-layer values in
    `config.prunekit_layer_widths` when any field differs between layers (else remove that record)."""
    uneven = False
    for field_name, values in widths.items():
        if len(set(values)) == 1:
            setattr(config, field_name, values[0])
        else:
            uneven = True
    if uneven:
        config.prunekit_layer_widths = widths
    elif hasattr(config, "prunekit_layer_widths"):
        delattr(config, "prunekit_layer_widths")


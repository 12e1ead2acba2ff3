"""Model adapters: the only code that knows where an architecture keeps its blocks and projections.

`ADAPTERS` is their registry (`prunekit list adapters`): family name -> adapter class, found for a model by
`adapter_for(model)` from `model.config.model_type`; `@register_adapter` adds a new family.
"""

from .base import ADAPTERS, ModelAdapter, adapter_for, register_adapter, supported_model_types
from .bert import BertAdapter
from .gpt2 import GPT2Adapter
from .llama import LlamaAdapter

__all__ = ["ADAPTERS", "ModelAdapter", "adapter_for", "register_adapter", "supported_model_types", "LlamaAdapter",
           "GPT2Adapter", "BertAdapter"]

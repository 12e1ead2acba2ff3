"""Model adapters: the only code that knows where an architecture keeps its blocks and projections."""

from .base import ModelAdapter, adapter_for, register_adapter
from .bert import BertAdapter
from .gpt2 import GPT2Adapter
from .llama import LlamaAdapter

__all__ = ["ModelAdapter", "adapter_for", "register_adapter", "LlamaAdapter", "GPT2Adapter", "BertAdapter"]

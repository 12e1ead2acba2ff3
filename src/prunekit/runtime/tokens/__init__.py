"""Token-pruning presses (hidden states are dropped during prefill)."""

from .lazyllm import AuxEntry, LazyLLMPress, keep_counts

__all__ = ["LazyLLMPress", "AuxEntry", "keep_counts"]

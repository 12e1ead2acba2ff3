"""Inference-time presses for Hugging Face decoders: `with press(model): model.generate(...)`.

KV-cache eviction after prefill (StreamingLLM, H2O, SnapKV, key norm), progressive token dropping during prefill
(LazyLLM) and sparse attention (DELTA for decode, HiP for prefill). Importing this package changes nothing in
transformers; hooks and attention functions exist only inside a press's `with` block.
"""

from .attention import DeltaPress, FlopCount, HipPress, attention_flops, gathered_attention, hip_select
from .base import ComposedPress, PerLayerPress, Press, validate_ratio
from .kv import H2OPress, KeyNormPress, KVPress, SnapKVPress, StreamingLLMPress, cache_bytes, cache_lengths
from .registry import PRESSES, make_press, press_options
from .tokens import LazyLLMPress, keep_counts

__all__ = [
    "Press", "PerLayerPress", "ComposedPress", "validate_ratio",
    "KVPress", "StreamingLLMPress", "H2OPress", "SnapKVPress", "KeyNormPress", "cache_bytes", "cache_lengths",
    "LazyLLMPress", "keep_counts",
    "PRESSES", "make_press", "press_options",
    "DeltaPress", "HipPress", "hip_select", "gathered_attention", "attention_flops", "FlopCount",
]

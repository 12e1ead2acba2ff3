"""KV-cache presses applied once after prefill, and cache measurement helpers."""

from .base import KVPress, cache_bytes, cache_lengths, keep_count
from .h2o import H2OPress
from .knorm import KeyNormPress
from .snapkv import SnapKVPress
from .streaming import StreamingLLMPress

__all__ = ["KVPress", "cache_bytes", "cache_lengths", "keep_count", "StreamingLLMPress", "H2OPress", "SnapKVPress",
           "KeyNormPress"]

"""Evaluation: perplexity, parameter counts, MACs, latency and memory, and run reports."""

from ..core.entry import make_callable
from .efficiency import count_parameters, decode_tokens_per_second, macs_per_token, prefill_latency
from .perplexity import PerplexityProtocol, perplexity

__all__ = ["PerplexityProtocol", "perplexity", "count_parameters", "macs_per_token", "prefill_latency",
           "decode_tokens_per_second"]
make_callable(__name__)  # prunekit.evaluate(...) calls prunekit.api.evaluate

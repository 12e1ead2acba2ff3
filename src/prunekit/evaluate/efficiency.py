"""Efficiency measures: parameters (total, non-zero), MACs per token, prefill latency, decode speed, memory.

Timings follow one rule: warm up once, then take the median of `repeats` runs. To compare two models,
measure them in one process with runs interleaved (`interleaved_medians`) and report ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def count_parameters(model: Any, *, exclude_embeddings: bool = False) -> dict[str, int]:
    """Total and non-zero parameters (tied weights counted once)."""
    import torch

    seen: set[int] = set()
    embedding_ids = set()
    if exclude_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                embedding_ids.add(id(module.weight))
    total = nonzero = 0
    for param in model.parameters():
        if id(param) in seen or id(param) in embedding_ids:
            continue
        seen.add(id(param))
        total += param.numel()
        nonzero += int(torch.count_nonzero(param).item())
    return {"total": total, "nonzero": nonzero}


def _linear_like(module: Any) -> tuple[int, int] | None:
    """(in_features, out_features) for Linear and transformers' Conv1D; None otherwise."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.shape[0], module.nf
    return None


def macs_per_token(model: Any, adapter: Any, seq_len: int) -> dict[str, float]:
    """Multiply-accumulates per token for a forward pass over `seq_len` tokens.

    `dense`: every weight of Linear-like layers (including the LM head) plus attention scores and
    weighted values (causal: on average (seq_len + 1) / 2 keys per query). `nonzero`: the same with
    only non-zero weights counted, the bound a sparse kernel could reach.
    """
    import torch

    dense = nonzero = 0
    for module in model.modules():
        shape = _linear_like(module)
        if shape is None:
            continue
        dense += shape[0] * shape[1]
        nonzero += int(torch.count_nonzero(module.weight).item())
    keys = (seq_len + 1) / 2 if adapter.is_causal_lm else seq_len
    attention = 0.0
    for block in adapter.blocks():
        attn = adapter.attention(block)
        heads = getattr(attn, "num_heads", None) or adapter.num_heads
        attention += 2 * heads * adapter.head_dim * keys
    return {"dense": dense + attention, "nonzero": nonzero + attention, "seq_len": seq_len}


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prefill_latency(model: Any, seq_len: int, *, batch_size: int = 1, repeats: int = 3, vocab: int = 1000) -> float:
    """Median seconds of one forward over a (batch, seq_len) prompt: the time to first token."""
    import torch

    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            model(input_ids=ids, use_cache=True)

    return _median_time(run, repeats)


def decode_tokens_per_second(model: Any, prompt_len: int, new_tokens: int, *, repeats: int = 3,
                             vocab: int = 1000) -> float:
    """Greedy decoding speed after a prompt of `prompt_len` tokens (prefill excluded)."""
    import torch

    ids = torch.randint(0, vocab, (1, prompt_len), generator=torch.Generator().manual_seed(0))

    def decode_only() -> float:
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True)
            cache, token = out.cache, out.logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(new_tokens):
                out = model(input_ids=token, cache=cache, use_cache=True)
                cache, token = out.cache, out.logits[:, -1:].argmax(-1)
            return time.perf_counter() - start

    decode_only()
    return new_tokens / statistics.median(decode_only() for _ in range(repeats))


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int = 5) -> dict[str, float]:
    """Median seconds per callable, with the callables run in turn (ABAB...) after one warm-up each."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}



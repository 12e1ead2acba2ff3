"""Shared helpers of the runtime-press benchmarks: model, needle prompts, greedy decoding from a cache, KV-press
replay, Markdown tables and JSON results. Not a benchmark itself.

KV-press replay. A KV press (StreamingLLM, H2O, SnapKV, key norm) leaves prefill exact: each layer's attention
sees the whole prompt and the press evicts that layer's cache entries only afterwards, so the prefill output and
the inputs of every attention module are the same as dense. `DensePrefill` therefore runs one dense prefill per
prompt, keeping each attention module's call (kwargs: normed hidden states, RoPE cos/sin, mask) and the full cache;
`replay_kv_press` enters `with press(model)` and calls the press's own post-attention hook
(`KVPress._after_attention`) on a copy of the cache with exactly those inputs, then decodes greedily inside the
press (its position and mask hooks active). `bench/runtime/kv.py --check` compares this with a plain
`model.generate` under the press, token for token.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from prunekit.evaluate.records import bench_setup, read_record, write_record  # noqa: E402
from prunekit.evaluate.report import markdown_table  # noqa: E402, F401  (used by the scripts)

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEPTHS = [0.1, 0.3, 0.5, 0.7, 0.9]
NEEDLE_SEED = 0


def setup(threads: int = 1) -> None:
    """Offline, `threads` torch threads, seed 0 (prunekit.evaluate.records.bench_setup)."""
    bench_setup(threads)


def load_model():
    from prunekit.models import load

    lm = load("smollm2-135m")
    lm.model.eval()
    return lm


def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/runtime-<name>.json with the command line, date and machine (write_record)."""
    return write_record(RESULTS / f"runtime-{name}.json", result)


def read_result(name: str) -> dict[str, Any] | None:
    return read_record(RESULTS / f"runtime-{name}.json")


def chosen_length(default: int = 2048) -> int:
    """The needle length picked by bench/runtime/needle.py (longest where dense >= 80%), else `default`."""
    result = read_result("needle")
    return int(result["chosen_length"]) if result and result.get("chosen_length") else default


def needle_set(tokenizer: Any, length: int, per_depth: int, seed: int = NEEDLE_SEED, depths: Sequence[float] = DEPTHS):
    from prunekit.evaluate.needle import needle_samples

    return needle_samples(tokenizer, [length], list(depths), per_depth, seed=seed, template="chat")


def ids_tensor(sample: Any) -> torch.Tensor:
    return torch.tensor([list(sample.input_ids)], dtype=torch.long)


@torch.no_grad()
def prefill_call(model: Any, ids: torch.Tensor, press: Any = None):
    """A callable running one prefill of `ids` (last-token logits, as generate() does), inside `press` if given."""
    def run() -> None:
        with torch.no_grad():
            if press is None:
                model(input_ids=ids, use_cache=True, logits_to_keep=1)
            else:
                with press(model):
                    model(input_ids=ids, use_cache=True, logits_to_keep=1)
    return run


def greedy_decode(model: Any, cache: Any, first: int, steps: int, eos: int | None = None) -> list[int]:
    """`first` (already chosen from the prefill logits) plus up to steps - 1 greedy tokens decoded from `cache`."""
    tokens = [first]
    while len(tokens) < steps and tokens[-1] != eos:
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


class DensePrefill:
    """One dense prefill: last-position logits, the full cache and every attention module's call kwargs."""

    def __init__(self, model: Any, ids: torch.Tensor):
        from prunekit.runtime.base import attention_modules
        from prunekit.utils.hooks import HookSet

        self.calls: list[tuple[Any, dict[str, Any]]] = []
        hooks = HookSet()

        def keep(module, args, kwargs, output):
            self.calls.append((module, {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values")}))

        for module in attention_modules(model):
            hooks.forward(module, keep, with_kwargs=True)
        try:
            with torch.no_grad():
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        finally:
            hooks.remove()
        self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        self.first = int(out.logits[0, -1].argmax())
        self.length = ids.shape[1]

    def cache_copy(self) -> Any:
        return copy.deepcopy(self.cache)


@torch.no_grad()
def replay_kv_press(model: Any, press: Any, prefill: DensePrefill, steps: int, eos: int | None = None
                    ) -> tuple[list[int], int, list[int]]:
    """(greedy tokens, cache bytes after eviction, cache lengths per layer) for a KV press, see the module doc."""
    from prunekit.runtime import cache_bytes, cache_lengths

    with press(model):
        cache = prefill.cache_copy()
        for module, kwargs in prefill.calls:
            press._after_attention(module, (), {**kwargs, "cache": cache}, None)
        size, lengths = cache_bytes(cache), cache_lengths(cache)
        tokens = greedy_decode(model, cache, prefill.first, steps, eos)
    return tokens, size, lengths


def sample_key(sample: Any, index: int) -> str:
    """Stable id of a needle sample: length, depth and index within its (length, depth) cell."""
    return f"{sample.length}/{sample.depth}/{index}"


def cell_indices(per_depth: int, first: int = 0) -> list[int]:
    return list(range(first, first + per_depth))


def needle_range(tokenizer: Any, length: int, first: int, count: int, seed: int = NEEDLE_SEED
                 ) -> list[tuple[str, Any]]:
    """(key, sample) for sample indices first..first+count-1 at every depth (samples are independent of `first`:
    each is seeded by its own (seed, length, depth, index))."""
    samples = needle_set(tokenizer, length, first + count, seed)
    per = first + count
    out = []
    for d in range(len(DEPTHS)):
        for i in range(first, per):
            sample = samples[d * per + i]
            out.append((sample_key(sample, i), sample))
    return out


def answer_correct(tokenizer: Any, tokens: list[int], sample: Any) -> bool:
    from prunekit.evaluate.needle import is_correct

    return is_correct(tokenizer.decode(tokens, skip_special_tokens=True), sample.answer)


def merge_records(old: dict[str, dict[str, Any]] | None, new: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{config: {sample key: record}} merged (new wins)."""
    out = {name: dict(records) for name, records in (old or {}).items()}
    for name, records in new.items():
        out.setdefault(name, {}).update(records)
    return out

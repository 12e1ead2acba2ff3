"""Run evaluation tasks on a loaded model; the dense perplexity is cached per (model, corpus, protocol)."""

from __future__ import annotations

import json
import time
from typing import Any

from ..core.memory import PeakMemory
from ..utils.paths import atomic_write_text, cache_dir
from ..utils.progress import log
from .efficiency import count_parameters, decode_tokens_per_second, macs_per_token, prefill_latency
from .perplexity import PerplexityProtocol, perplexity


def _baseline_path(fingerprint: str, key: str):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{fingerprint}-{key}")
    return cache_dir("baselines") / f"{safe}.json"


def perplexity_task(loaded: Any, config: Any, *, use_cache: bool = False) -> dict[str, float]:
    """{"perplexity": ...}; `use_cache` reads/writes the dense baseline cache (unmodified models only)."""
    protocol = PerplexityProtocol(config.perplexity.corpus, config.perplexity.window,
                                  config.perplexity.windows, config.perplexity.batch_size)
    path = _baseline_path(loaded.fingerprint, protocol.key()) if use_cache and loaded.fingerprint else None
    if path is not None and path.is_file():
        value = json.loads(path.read_text())["perplexity"]
        log(f"dense perplexity {value:.3f} (cached: {path.name})")
        return {"perplexity": value, "perplexity_cached": 1.0}
    start = time.perf_counter()
    value = perplexity(loaded.model, loaded.tokenizer, protocol)
    seconds = time.perf_counter() - start
    if path is not None:
        atomic_write_text(path, json.dumps({"perplexity": value, "protocol": protocol.to_dict(),
                                            "model": loaded.fingerprint}, indent=1))
    return {"perplexity": value, "perplexity_seconds": seconds}


def efficiency_task(loaded: Any, config: Any, **_: Any) -> dict[str, float]:
    eff = config.efficiency
    model = loaded.model
    params = count_parameters(model)
    body = count_parameters(model, exclude_embeddings=True)
    macs = macs_per_token(model, loaded.adapter, eff.macs_seq_len)
    vocab = getattr(model.config, "vocab_size", 1000)
    with PeakMemory() as memory:
        prefill = prefill_latency(model, eff.prefill_tokens, repeats=eff.repeats, vocab=vocab)
        decode = decode_tokens_per_second(model, eff.prefill_tokens, eff.decode_tokens, repeats=eff.repeats,
                                          vocab=vocab) if loaded.adapter.is_causal_lm else float("nan")
    return {
        "params_total": params["total"], "params_nonzero": params["nonzero"],
        "params_body": body["total"], "params_body_nonzero": body["nonzero"],
        "sparsity_body": 1 - body["nonzero"] / max(body["total"], 1),
        "macs_per_token": macs["dense"], "macs_per_token_nonzero": macs["nonzero"],
        "prefill_seconds": prefill, "decode_tokens_per_second": decode,
        "peak_rss_bytes": memory.peak,
    }


def evaluate_loaded(loaded: Any, config: Any, *, dense: bool = False, press: Any = None) -> dict[str, float]:
    """All tasks of an EvaluationConfig; `dense=True` allows the cached dense perplexity.

    With an inference-time `press` (prunekit.runtime), the needle task enters the press around each generation and
    every other task runs inside `with press(model)`; perplexity is skipped (NaN) for presses that drop tokens
    (LazyLLM), whose pruned rows carry no predictions."""

    from .tasks import TASKS

    results: dict[str, float] = {}
    for task in config.tasks:
        log(f"evaluating {task} ..." + (f" (press {type(press).__name__})" if press is not None else ""))
        run = TASKS.load(task)
        if press is None:
            results.update(run(loaded, config, use_cache=dense))
        elif task == "needle":
            results.update(run(loaded, config, press=press))
        elif task == "perplexity" and getattr(press, "drops_tokens", False):
            log(f"perplexity skipped: {type(press).__name__} drops prompt tokens")
            results["perplexity"] = float("nan")
        else:
            with press(loaded.model):
                results.update(run(loaded, config))
    return results

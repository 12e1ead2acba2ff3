"""Evaluation tasks by name; each is `run(loaded, config) -> dict[str, float]`."""

from __future__ import annotations

from ..registry import Registry

TASKS = Registry("task")
TASKS.register("perplexity", "prunekit.evaluate.run:perplexity_task",
               summary="perplexity on the evaluation split (non-overlapping windows; see `prunekit eval --help`)")
TASKS.register("efficiency", "prunekit.evaluate.run:efficiency_task",
               summary="parameters, non-zeros, MACs/token, prefill latency (TTFT), decode tokens/s, peak memory")
TASKS.register("needle", "prunekit.evaluate.needle:needle_task",
               summary="needle-in-a-haystack (passkey) retrieval accuracy, greedy answers (inference-time presses)")

"""Shared helpers of the recovery benchmarks: the dense model, the pruned bases (made once, cached), perplexity on
the evaluation split of several corpora, gap closure, and JSON results that record their command line."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from prunekit.evaluate.records import write_record  # noqa: E402

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "results"
RESULTS = DEFAULT_RESULTS
# the one-shot models of issue 13, as BENCHMARKS.md reports them (SmolLM2-135M, 32 x 512 wiki calibration tokens)
BASES = {
    "flap30": {"method": "llm-structured", "ratio": 0.3, "criterion": "flap", "allocation": "angular",
               "bias_compensation": True},
    "depth8": {"method": "depth", "blocks": 8, "order": "angular"},
    "sgpt24": {"method": "sparsegpt", "pattern": "2:4"},
}
# evaluation: windows of 1024 tokens from each evaluation split (wiki as in BENCHMARKS.md; news has only 7)
EVAL = {"wiki": 16, "news": 7, "shakespeare": 8}


def fresh_copy(loaded: Any) -> Any:
    out = copy.copy(loaded)
    out.model = copy.deepcopy(loaded.model)
    out.adapter = type(loaded.adapter)(out.model)
    return out


def pruned_base(dense: Any, base: str) -> Any:
    """The dense model pruned with BASES[base]: pruned once and saved to the prunekit cache, then reloaded."""
    from prunekit.io import save_model
    from prunekit.models import load
    from prunekit.pipeline import RunContext, run_stage
    from prunekit.recipe import parse_recipe
    from prunekit.recipe.stages import parse_stage
    from prunekit.utils.paths import cache_dir

    folder = cache_dir("bench-recover") / base
    if not (folder / "config.json").is_file():
        loaded = fresh_copy(dense)
        recipe = parse_recipe({"model": "smollm2-135m", "calibration": {"corpus": "wiki", "samples": 32,
                                                                          "seq_len": 512, "seed": 0}})
        ctx = RunContext(recipe, folder.parent)
        run_stage(parse_stage({"prune": BASES[base]}, base), loaded, ctx, base)
        save_model(loaded, folder, plan=ctx.extras.get(("plan", base)), overwrite=True)
    return load(str(folder))


def perplexities(loaded: Any, windows: dict[str, int] = EVAL) -> dict[str, float]:
    from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity

    return {c: perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(c, 1024, n)) for c, n in windows.items()}


def dense_perplexities(dense: Any) -> dict[str, float]:
    """Cached per dense fingerprint (the dense model never changes)."""
    from prunekit.utils.paths import cache_dir

    path = cache_dir("bench-recover") / f"dense-{dense.fingerprint.replace(':', '_')}.json"
    if path.is_file():
        return json.loads(path.read_text())
    found = perplexities(dense)
    path.write_text(json.dumps(found))
    return found


def gap_closed(dense: float, pruned: float, recovered: float) -> float:
    """Fraction of the log-perplexity gap to dense that recovery closed."""
    return (math.log(pruned) - math.log(recovered)) / (math.log(pruned) - math.log(dense))


def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/recover-<name>.json with the command line, date and machine (write_record)."""
    return write_record(RESULTS / f"recover-{name}.json", result)


def checkpoint(name: str) -> Path:
    """Where the run that writes recover-<name>.json keeps its resumable training checkpoint: an interrupted
    benchmark (Ctrl-C, SIGTERM) continues there when the same command runs again. A --smoke run (RESULTS moved to
    a temporary folder) keeps it there, so it never resumes a real run's checkpoint."""
    from prunekit.utils.paths import cache_dir

    root = cache_dir("bench-recover") if RESULTS == DEFAULT_RESULTS else RESULTS
    return root / "checkpoints" / f"{name}.pt"

"""Public Python entry points: run(), evaluate(), prune(), recover(), compress_context(); the CLI is a thin shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .recipe import EvaluationConfig, Recipe, load_recipe, parse_recipe


def run(recipe: str | Path | dict | Recipe, *, overrides: list[str] | None = None, output: str | None = None,
        overwrite: bool = False) -> dict:
    """Run a recipe (file path, plain dict or Recipe) and return its report (also written to disk)."""
    from .pipeline import run_recipe
    from .recipe import apply_overrides

    if isinstance(recipe, str | Path):
        recipe = load_recipe(recipe, overrides)
    elif isinstance(recipe, dict):
        recipe = parse_recipe(apply_overrides(recipe, overrides or []))
    return run_recipe(recipe, output=output, overwrite=overwrite)


def evaluate(model: Any = "smollm2-135m", *, tasks: list[str] | None = None, corpus: str = "wiki",
             window: int = 1024, windows: int = 16) -> dict[str, float]:
    """Evaluate a model (name, path, or prunekit.models.LoadedModel) and return its metrics."""
    from .core.typed import from_dict
    from .evaluate.run import evaluate_loaded
    from .models import LoadedModel, load

    config = from_dict(EvaluationConfig, {
        "tasks": tasks or ["perplexity", "efficiency"],
        "perplexity": {"corpus": corpus, "window": window, "windows": windows},
    }, "evaluation")
    loaded = model if isinstance(model, LoadedModel) else load(model)
    return evaluate_loaded(loaded, config, dense=not isinstance(model, LoadedModel))


def prune(model: Any, method: str, *, calibration: dict | None = None, **options: Any):
    """Prune `model` (name, path or LoadedModel) in place with a registered method; returns (model, result), the
    result a `prunekit.prune.result.PruneResult` (requested / achieved removed fraction, layers, plan, details;
    also readable as the report mapping)."""
    from .core.typed import from_dict
    from .methods import METHODS
    from .models import LoadedModel, load
    from .pipeline import RunContext

    entry = METHODS.get(method)
    config = from_dict(entry.config, options, method)
    loaded = model if isinstance(model, LoadedModel) else load(model)
    recipe = parse_recipe({"model": loaded.source or "smollm2-135m", "calibration": calibration or {}})
    result = METHODS.load(method)(loaded, config, RunContext(recipe, Path(".")).inputs(), method=method)
    return loaded, result


def recover(model: Any, *, teacher: Any = None, checkpoint: str | None = None, **options: Any):
    """Fine-tune a pruned `model` (LoadedModel) in place so it heals; every pruned weight stays zero.

    Options are those of `prunekit.recover.RecoverConfig` (method, rank, tokens, lr, loss, ...); `teacher` (the
    dense model) is needed for the distillation losses (fkl, rkl, jsd). Returns (model, report).
    """
    from .core.typed import from_dict
    from .recover import RecoverConfig
    from .recover.run import recover as run_recovery

    config = from_dict(RecoverConfig, options, "recover")
    details = run_recovery(model, config, teacher=teacher, checkpoint=checkpoint)
    return model, details


def compress_context(query: str, text: str | bytes, *, method: str = "sentences", tokens: int | None = None,
                     ratio: float | None = None, threshold: float | None = None, rate: float | None = None,
                     pruner: Any = None):
    """Prune `text` for `query` with a context pruner (sentences, code, tokens); returns a `Pruned`.

    Give exactly one of `tokens` (keep at most N tokens), `ratio` (the fraction of the tokens REMOVED, in
    [0, 1), as `ratio` everywhere in prunekit) or `threshold` (adaptive, sentences only). `rate` (the kept
    fraction) is the deprecated old form of `ratio` = 1 - rate: it still works, with a RenamedOptionWarning.
    Pass a constructed `pruner` to reuse its loaded models across calls.
    """
    from .context import Budget, get_pruner

    budget = Budget(tokens=tokens, ratio=ratio, threshold=threshold, rate=rate)
    if pruner is None:
        pruner = get_pruner(method)()
    return pruner.prune(query, text, budget)

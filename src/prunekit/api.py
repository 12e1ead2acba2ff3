"""Public Python entry points: run(), evaluate(), prune(), save(), recover(), compress_context(); the CLI is a thin
shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError
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


def prune(model: Any, method: str, *, example_inputs: Any = None, calibration: Any = None, **options: Any):
    """Prune `model` in place with a registered method (`prunekit list methods`); returns (model, result).

    model: a bundled name, a folder, a hub id, a LoadedModel, or any nn.Module (a Hugging Face model, or a plain
    PyTorch module such as a torchvision ResNet). example_inputs: what a plain module is traced with for
    structured methods (a tensor, a tuple of args or a dict of kwargs). calibration: for calibrated methods, a
    recipe calibration section ({"corpus", "samples", "seq_len", "seed"}) drawn with the model's tokenizer, or
    the token ids themselves (a (samples, seq_len) tensor) for a model without one. The method name and its
    options are checked before any weights load. The result is a `prunekit.prune.result.PruneResult`
    (requested / achieved removed fraction, layers, plan, details; also readable as the report mapping) that
    carries the pruned model, so `prunekit.save(result, folder)` writes what `prunekit.load` reads.
    """
    import dataclasses

    from .core.typed import from_dict
    from .methods import METHODS
    from .models import LoadedModel, load
    from .pipeline import RunContext

    entry = METHODS.get(method)
    config = from_dict(entry.config, options, method)
    section = calibration if isinstance(calibration, dict) else {}  # else: token ids, or nothing
    recipe = parse_recipe({"calibration": section})  # a bad calibration section fails before loading
    loaded = model if isinstance(model, LoadedModel) else load(model)
    inputs = dataclasses.replace(RunContext(recipe, Path(".")).inputs(), example_inputs=example_inputs,
                                 batches=None if isinstance(calibration, dict) else calibration)
    result = METHODS.load(method)(loaded, config, inputs, method=method)
    return loaded, dataclasses.replace(result, model=loaded)


def save(result: Any, folder: str | Path, *, builder: str | None = None, kwargs: dict | None = None,
         overwrite: bool = False) -> Path:
    """Write a pruned model to `folder` so that `prunekit.load(folder)` rebuilds it, atomically.

    result: what `prunekit.prune` returned (the result, which carries the model and its plan), a LoadedModel
    or an nn.Module. A Hugging Face model becomes a normal model folder; a plain PyTorch module becomes its
    state dict, the plan and how to build it (prunekit/io/module.py): `prunekit.load(folder)` calls `builder`
    ("package.module:name", default: the model's class) with `kwargs` (JSON data) for the unpruned network and
    resizes it to the saved shapes; or pass one: `prunekit.load(folder, model=fresh_unpruned_instance)`.
    """
    from .io import save_model
    from .io.module import save_module
    from .models import LoadedModel, load
    from .prune.result import PruneResult

    plan = None
    if isinstance(result, PruneResult):
        if result.model is None:
            raise ConfigError("This PruneResult carries no model (it did not come from prunekit.prune); "
                              "pass the model: prunekit.save(model, folder).")
        plan, result = result.plan, result.model
    loaded = result if isinstance(result, LoadedModel) else load(result)
    if loaded.adapter is None:
        return save_module(loaded.model, folder, plan=plan, builder=builder, kwargs=kwargs, overwrite=overwrite)
    if builder or kwargs:
        raise ConfigError("builder= and kwargs= rebuild plain PyTorch modules; a Hugging Face model is rebuilt "
                          "from its config.")
    from .models import MODELS

    base = loaded.name if loaded.name in MODELS else loaded.source  # `prunekit eval FOLDER` compares with it
    return save_model(loaded, folder, plan=plan, recipe={"model": base} if base else None, overwrite=overwrite)


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
    from .context.base import as_text, check_modes

    budget = Budget(tokens=tokens, ratio=ratio, threshold=threshold, rate=rate)
    text = as_text(text, "text")  # bad bytes and budget modes fail before any model loads
    if pruner is None:
        cls = get_pruner(method)
        check_modes(budget, cls.supported_modes, method)
        pruner = cls()
    return pruner.prune(query, text, budget)

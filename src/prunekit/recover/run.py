"""Recovery after pruning: LoRA or full fine-tuning on the training engine, optionally distilled from the dense
model, with every zero of a sparse layer kept exactly (see lora.py and full.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..utils.progress import log
from .config import RecoverConfig


def check_teacher(student: Any, teacher: Any, config: RecoverConfig) -> Any:
    """The teacher nn.Module, or None; ConfigError when the loss needs one that is missing or mismatched."""
    if not config.needs_teacher:
        return None
    if teacher is None:
        if config.loss != "ce":
            why = f"loss '{config.loss}' distils from"
        elif config.select == "paser":
            why = "select 'paser' scores windows with"
        else:
            why = "mix 'dynamic' takes reference losses from"
        raise ConfigError(f"recover {why} a teacher (the dense model): in a recipe it is the dense model; in Python "
                          "pass teacher=...; or use loss: ce, select: all or random, mix: fixed")
    from ..models import LoadedModel

    teacher = teacher.model if isinstance(teacher, LoadedModel) else teacher
    ours, theirs = _vocab_size(student), _vocab_size(teacher)
    if ours != theirs:
        raise ConfigError(f"The teacher has a vocabulary of {theirs} tokens and the student {ours}; distillation "
                          "compares their logits token by token, so both need the same tokenizer.")
    return teacher


def _vocab_size(model: Any) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return getattr(getattr(model, "config", None), "vocab_size", None)


def target_modules(model: Any, config: RecoverConfig) -> dict[str, Any]:
    """{name: module} of the Linear-like layers chosen by include / exclude (ConfigError when none)."""
    from ..prune.layers import select_layers

    layers, _skipped = select_layers(model, config.include, config.exclude)
    return {layer.name: layer.module for layer in layers}


def report_perplexities(loaded: Any, config: RecoverConfig) -> dict[str, float]:
    """{corpus: perplexity} on the evaluation split (report_windows windows of 512 tokens)."""
    from ..evaluate.perplexity import PerplexityProtocol, perplexity

    if not config.report_windows:
        return {}
    return {c: perplexity(loaded.model, loaded.tokenizer, PerplexityProtocol(c, 512, config.report_windows))
            for c in config.report_corpora}


def recover(loaded: Any, config: RecoverConfig, *, teacher: Any = None, checkpoint: str | Path | None = None) -> dict:
    """Fine-tune `loaded.model` in place and return the report of the run (tokens, time, losses, perplexities).

    `teacher` (the dense model, a LoadedModel or nn.Module with the same vocabulary) is needed for the
    distillation losses. `checkpoint`: a file for resumable checkpoints (an interrupted run continues there).
    """
    from ..core.memory import PeakMemory
    from ..train import Trainer
    from ..train.data import validation_windows
    from .selection import build_stream

    if not getattr(loaded.adapter, "is_causal_lm", True):
        raise ConfigError(f"recover fine-tunes causal language models; '{loaded.name}' is not one")
    model = loaded.model
    dense_model = check_teacher(model, teacher, config)
    teacher_model = dense_model if config.loss != "ce" else None
    modules = target_modules(model, config)
    stream, selection = build_stream(loaded, config, dense_model)
    held_out = {c: validation_windows(loaded.tokenizer, c, config.eval_windows, config.seq_len)
                for c in config.corpus}
    before = report_perplexities(loaded, config)
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}

    loss_fn = _loss_fn(model, teacher_model, config)
    validate = _validator(model, held_out)
    plugins = [_mixture(dense_model, held_out, config)] if config.mix == "dynamic" else []
    zeros_before = {name: (m.weight == 0).clone() for name, m in modules.items()}
    method = _METHODS[config.method](model, modules, config)
    try:
        with PeakMemory() as memory:
            trainer = Trainer(model, method.parameters, config, loss_fn, stream, validate=validate,
                              plugins=method.plugins + plugins, checkpoint=checkpoint,
                              description=f"recover ({config.method})")
            result = trainer.fit()
    except BaseException:
        method.abort()
        _restore_flags(model, requires_grad)
        raise
    method.finish()
    _restore_flags(model, requires_grad)
    model.eval()
    kept = _check_zeros(model, zeros_before, method.masks)
    after = report_perplexities(loaded, config)
    log(f"  recover: {result.tokens} tokens in {result.seconds:.0f} s ({result.tokens_per_second:.0f} tok/s), "
        f"loss {result.history[0]['loss']:.3f} -> {result.history[-1]['loss']:.3f}")
    return {
        "method": config.method, "loss": config.loss, "layers_trained": len(modules),
        "trainable_params": method.trainable, "tokens": result.tokens, "steps": result.steps,
        "recover_seconds": result.seconds, "tokens_per_second": result.tokens_per_second,
        "peak_rss_bytes": memory.peak, "masked_layers": len(method.masks), "zeros_kept": kept,
        "perplexity_before": before, "perplexity_after": after, "history": result.history, "evals": result.evals,
        "resumed_from": result.resumed_from, "selection": selection,
        "mixture": {"reference": plugins[0].reference, "weights": plugins[0].history} if plugins else None,
    }


def _loss_fn(model: Any, teacher: Any, config: RecoverConfig):
    """(ids, sources) -> (loss, parts): cross-entropy and/or the divergence from the teacher's logits."""
    from .losses import recovery_loss

    def loss_fn(ids: torch.Tensor, _sources: torch.Tensor):
        teacher_logits = None
        if teacher is not None:
            with torch.inference_mode():
                teacher_logits = teacher(input_ids=ids, use_cache=False).logits.clone()
        logits = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
        return recovery_loss(logits, ids, teacher_logits, config.loss, config.distill, config.temperature,
                             config.top_k)

    return loss_fn


def _validator(model: Any, held_out: dict[str, torch.Tensor]):
    """() -> {"val_loss/<corpus>": next-token loss on the corpus's validation windows}."""
    from .losses import next_token_loss

    def validate() -> dict[str, float]:
        return {f"val_loss/{c}": next_token_loss(model(input_ids=ids, use_cache=False).logits, ids).item()
                for c, ids in held_out.items()}

    return validate


def _mixture(dense: Any, held_out: dict[str, torch.Tensor], config: RecoverConfig) -> Any:
    """The dynamic-mixing plug-in, its reference losses the dense model's on the validation windows."""
    from ..train.mixture import DynamicMixture

    reference = _validator(dense, held_out)
    with torch.no_grad():
        losses = {key.split("/", 1)[1]: value for key, value in reference().items()}
    return DynamicMixture(config.corpus, losses, eta=config.mix_eta, smoothing=config.mix_smoothing)


def _restore_flags(model: Any, requires_grad: dict[str, bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(requires_grad.get(name, True))


def _check_zeros(model: Any, zeros_before: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> int:
    """Zeros of the masked layers, after recovery; RuntimeError if any of them moved."""
    total = 0
    for name in masks:
        now = model.get_submodule(name).weight == 0
        was = zeros_before[name]
        if not torch.equal(now & was, was):
            raise RuntimeError(f"recovery moved pruned weights of '{name}': {int(was.sum())} zeros before, "
                               f"{int((now & was).sum())} of them still zero")
        total += int(was.sum())
    return total


class _Lora:
    def __init__(self, model: Any, modules: dict, config: RecoverConfig) -> None:
        from .lora import attach_lora, lora_parameters

        self.peft_model, self.masks = attach_lora(model, modules, config)
        self.parameters = lora_parameters(model)
        self.trainable = sum(p.numel() for _n, p in self.parameters)
        self.plugins = []

    def finish(self) -> None:
        from .lora import merge_lora

        merge_lora(self.peft_model)

    def abort(self) -> None:
        from .lora import remove_lora

        remove_lora(self.peft_model)


class _Full:
    def __init__(self, model: Any, modules: dict, config: RecoverConfig) -> None:
        from .full import KeepZeros, full_parameters

        self.parameters = full_parameters(model, modules)
        self.trainable = sum(p.numel() for _n, p in self.parameters)
        keeper = KeepZeros(modules, config.mask_min_sparsity)
        self.masks = keeper.masks
        self.plugins = [keeper]

    def finish(self) -> None:
        pass

    abort = finish


_METHODS = {"lora": _Lora, "full": _Full}

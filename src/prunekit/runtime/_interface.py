"""Swap a model's attention function for the duration of a `with` block, through transformers' AttentionInterface.

A press registers its function under a unique name (and the mask function of the implementation it wraps under the
same name, so masks are built exactly as before), points every config of the model at that name, and on exit
restores the previous names and removes both registrations. Nothing is registered at import time.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

AttentionFn = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
_counter = itertools.count()


def _configs(model: nn.Module) -> list[Any]:
    seen: dict[int, Any] = {}
    for module in [model, *model.modules()]:
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen[id(config)] = config
    return list(seen.values())


def _eager_for(module: nn.Module) -> AttentionFn:
    """The model file's own `eager_attention_forward` (Llama and GPT-2 differ), found from the module's class."""
    source = importlib.import_module(type(module).__module__)
    fn = getattr(source, "eager_attention_forward", None)
    if fn is None:
        raise ValueError(f"{type(module).__module__} has no eager_attention_forward; cannot delegate 'eager'")
    return fn


def previous_function(name: str | None) -> Callable[[nn.Module], AttentionFn]:
    """Resolve the attention function registered as `name` (per module, because 'eager' is model-specific)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name in (None, "eager"):
        return _eager_for
    fn = ALL_ATTENTION_FUNCTIONS[name]
    return lambda module: fn


@contextmanager
def attention_function(model: nn.Module, tag: str, make: Callable[[Callable[[nn.Module], AttentionFn]], AttentionFn]
                       ) -> Iterator[str]:
    """Install `make(previous)` as the model's attention function; `previous(module)` gives the wrapped one."""
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    configs = _configs(model)
    if not configs:
        raise ValueError(f"model {type(model).__name__} has no config with an attention implementation")
    before = [config._attn_implementation for config in configs]
    current = before[0]
    name = f"prunekit_{tag}_{next(_counter)}"
    mask_fn = AttentionMaskInterface._global_mapping.get(current or "eager")
    AttentionInterface.register(name, make(previous_function(current)))
    if mask_fn is not None:
        AttentionMaskInterface.register(name, mask_fn)
    try:
        for config in configs:
            config._attn_implementation = name
        yield name
    finally:
        for config, value in zip(configs, before, strict=True):
            config._attn_implementation = value
        AttentionInterface._global_mapping.pop(name, None)
        AttentionMaskInterface._global_mapping.pop(name, None)

"""KV-cache presses: score the prompt's cache entries once after prefill and evict the lowest-scoring ones.

Scheme shared by StreamingLLM, H2O, SnapKV and the key-norm press (papers cited in each module). A forward hook on
every self-attention module runs after the layer's prefill forward (attention itself is exact: it saw the full
prompt); it scores the layer's T cache entries per KV head and keeps the top `T - int(ratio * T)`, in their
original order. `ratio` is the fraction of the prompt's KV entries removed, 0.5 by default (at 0.5 SnapKV
kept the dense needle accuracy at 2048 tokens on SmolLM2-135M, BENCHMARKS.md; 0 keeps the cache, i.e. dense);
`layer_ratios` (set by PerLayerPress) overrides it per layer.

Positions after eviction. Kept keys were rotated (RoPE) before caching, so they stay correct. New tokens must get
positions that continue from the ORIGINAL prompt length. In transformers 5.24 `generate()` builds `position_ids`
once from the attention mask and then increments them per step (`_update_model_kwargs_for_generation`), so they
are right without help; but a plain `model(input_ids, cache=cache)` call derives them from
`cache.get_seq_length()`, which has shrunk. A forward pre-hook on the model therefore injects
`position_ids = seen_tokens + arange(q)` when the caller gives none, where `seen_tokens` = layer-0 cache length +
entries this press evicted from layer 0. Masks need no fix: every cached entry precedes the new queries.
Not supported: padded batches (the 2D attention mask would no longer match the cache) and continuing `generate`
from a compressed cache passed back in (generate slices the prompt by the shrunken cache length).
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...utils.hooks import HookSet
from .._attn import cache_layer, call_arg, drop_unpadded_mask, gather_kv
from ..base import RENAMED_RATIO, Press, attention_modules, num_layers, validate_ratio


def _cache_arg(args: tuple, kwargs: dict) -> Any:
    cache = call_arg(args, kwargs, "cache")
    return kwargs.get("past_key_values") if cache is None else cache


def keep_count(length: int, ratio: float) -> int:
    """Entries kept out of `length` when a fraction `ratio` is removed (floor of the removed count)."""
    return length - int(length * ratio)


def select_topk(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """scores (B, Hkv, T) -> indices (B, Hkv, keep) of the highest scores, sorted by position."""
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values


def cache_bytes(cache: Any) -> int:
    """Bytes held by the keys and values of a transformers Cache (or a legacy tuple of (k, v) pairs)."""
    cache = getattr(cache, "self_attention_cache", cache)
    layers = getattr(cache, "layers", None)
    pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers] if layers is not None \
        else list(cache)
    total = 0
    for pair in pairs:
        for tensor in pair[:2]:
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def cache_lengths(cache: Any) -> list[int]:
    """Number of cached entries per layer."""
    cache = getattr(cache, "self_attention_cache", cache)
    return [0 if getattr(layer, "keys", None) is None or layer.keys.numel() == 0 else int(layer.keys.shape[-2])
            for layer in cache.layers]


@dataclass
class KVPress(Press):
    """Base of the KV-cache presses: subclasses implement `score(module, hidden_states, keys, values, kwargs)`."""

    ratio: float = 0.5
    layer_ratios: dict[int, float] | None = field(default=None, repr=False)

    RENAMED: ClassVar[dict[str, str]] = RENAMED_RATIO
    modifies_cache: ClassVar[bool] = True
    per_layer_ratios: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.ratio = validate_ratio(self.ratio)
        self.evicted_per_layer: dict[int, int] = {}
        self._offsets: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def reset(self) -> None:
        self.evicted_per_layer = {}
        self._offsets = weakref.WeakKeyDictionary()

    def ratio_for(self, layer_idx: int) -> float:
        if self.layer_ratios and layer_idx in self.layer_ratios:
            return self.layer_ratios[layer_idx]
        return self.ratio

    def validate(self, model: nn.Module) -> None:
        if self.layer_ratios:
            count = num_layers(model)
            bad = [k for k in self.layer_ratios if not 0 <= k < count]
            if bad:
                raise ConfigError(f"layer_ratios name layers {bad} but the model has layers 0..{count - 1}")

    def score(self, module: nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
              kwargs: dict[str, Any]) -> torch.Tensor:
        """Importance (B, Hkv, T) of each cached entry; the highest are kept."""
        raise NotImplementedError

    # --- hooks ---------------------------------------------------------------------------------------------------
    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        for module in attention_modules(model):
            hooks.forward_pre(module, self._crop_mask, with_kwargs=True)
            hooks.forward(module, self._after_attention, with_kwargs=True)
        hooks.forward_pre(model, self._fix_positions, with_kwargs=True)

    def _crop_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Masks are built for layer 0's cache length; a layer holding fewer entries takes the last columns (valid
        without padding: every cached entry precedes the new queries, whose causal block is the last q columns)."""
        mask = kwargs.get("attention_mask")
        layer = cache_layer(_cache_arg(args, kwargs), int(module.layer_idx))
        if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or layer is None:
            return None
        width = layer.get_seq_length() + call_arg(args, kwargs, "hidden_states", 0).shape[1]
        if mask.shape[-1] <= width:
            return None
        return args, {**kwargs, "attention_mask": mask[..., -width:]}

    def _after_attention(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        hidden_states = call_arg(args, kwargs, "hidden_states", 0)
        cache = _cache_arg(args, kwargs)
        layer_idx = int(module.layer_idx)
        layer = cache_layer(cache, layer_idx)
        length = hidden_states.shape[1]
        if layer is None or length < 2 or getattr(layer, "is_sliding", False):
            return
        if layer.keys.shape[-2] != length:  # not a fresh prefill (continuation or decode)
            return
        keep = keep_count(length, self.ratio_for(layer_idx))
        if layer_idx == 0:
            self._offsets[getattr(cache, "self_attention_cache", cache)] = length - keep
        if keep >= length:
            return
        with torch.no_grad():
            scores = self.score(module, hidden_states, layer.keys, layer.values, kwargs)  # (B, Hkv, T)
            index = select_topk(scores.float(), keep)  # (B, Hkv, keep)
            layer.keys = gather_kv(layer.keys, index).contiguous()  # (B, Hkv, keep, D)
            layer.values = gather_kv(layer.values, index).contiguous()
        self.evicted_per_layer[layer_idx] = length - keep

    def _fix_positions(self, model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        cache = _cache_arg((), kwargs)
        if cache is None:
            return None
        kwargs = dict(kwargs)
        kwargs["attention_mask"] = drop_unpadded_mask(kwargs.get("attention_mask"), type(self).__name__)
        offset = self._offsets.get(getattr(cache, "self_attention_cache", cache), 0)
        tokens = call_arg(args, kwargs, "input_ids", 0)
        tokens = kwargs.get("inputs_embeds") if tokens is None else tokens
        if offset and kwargs.get("position_ids") is None and tokens is not None:
            start = cache.get_seq_length() + offset
            kwargs["position_ids"] = torch.arange(start, start + tokens.shape[1], device=tokens.device).unsqueeze(0)
        return args, kwargs


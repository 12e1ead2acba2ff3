"""Shared tensor helpers for the presses: query/key projection with RoPE, GQA expansion, row gathers.

Nothing here touches transformers globals; modules are read through capability checks (`q_proj` for the Llama
family, `c_attn` for GPT-2) so new architectures only need a projection branch here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, D) by cos/sin (B|1, T, D), the HF `rotate_half` convention."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D)
    return x * cos + _rotate_half(x) * sin


def head_dim(module: nn.Module) -> int:
    value = getattr(module, "head_dim", None)
    if value is None:
        raise ValueError(f"attention module {type(module).__name__} has no `head_dim`; cannot split heads")
    return int(value)


def kv_groups(module: nn.Module) -> int:
    """Query heads per KV head (1 without GQA)."""
    return int(getattr(module, "num_key_value_groups", 1))


def attention_scaling(module: nn.Module) -> float:
    scaling = getattr(module, "scaling", None)
    return float(scaling) if scaling is not None else head_dim(module) ** -0.5


def _split(x: torch.Tensor, dim: int) -> torch.Tensor:
    b, t, _ = x.shape
    return x.view(b, t, -1, dim).transpose(1, 2)  # (B, H, T, D)


def project_qk(
    module: nn.Module, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (B, H, T, D) and keys (B, Hkv, T, D) exactly as the attention module computes them (post-RoPE)."""
    dim = head_dim(module)
    hidden_states = hidden_states.contiguous()  # GPT-2's Conv1D uses view()
    if hasattr(module, "q_proj"):  # Llama family (Llama, Qwen2/3, Mistral)
        q = module.q_proj(hidden_states).view(*hidden_states.shape[:-1], -1, dim)
        k = module.k_proj(hidden_states).view(*hidden_states.shape[:-1], -1, dim)
        if getattr(module, "q_norm", None) is not None:
            q = module.q_norm(q)
        if getattr(module, "k_norm", None) is not None:
            k = module.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, D), (B, Hkv, T, D)
        if position_embeddings is not None:
            cos, sin = position_embeddings
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k
    if hasattr(module, "c_attn"):  # GPT-2: fused qkv, absolute positions already in the hidden states
        width = module.c_attn.nf // 3
        q, k, _ = module.c_attn(hidden_states).split(width, dim=2)
        return _split(q, dim), _split(k, dim)
    raise ValueError(
        f"cannot project queries for attention module {type(module).__name__}; supported layouts: q_proj/k_proj "
        "(Llama family), c_attn (GPT-2)"
    )


def repeat_heads(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * groups, T, D), each KV head repeated for its query group."""
    if groups == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, groups, t, d).reshape(b, h * groups, t, d)


def group_mean(scores: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H, ...) -> (B, Hkv, ...): mean over the query heads that share one KV head."""
    if groups == 1:
        return scores
    b, h = scores.shape[:2]
    return scores.view(b, h // groups, groups, *scores.shape[2:]).mean(dim=2)


def gather_rows(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Gather along `dim` with a (B, n) index shared by every other dim; x may have batch 1 (broadcast)."""
    batch = index.shape[0]
    if x.shape[0] != batch:
        x = x.expand(batch, *x.shape[1:])
    shape = [batch] + [1] * (x.dim() - 1)
    shape[dim] = index.shape[1]
    idx = index.view(shape).expand(*[s if i != dim else index.shape[1] for i, s in enumerate(x.shape)])
    return torch.gather(x, dim, idx)


def gather_kv(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, Hkv, T, D) and index (B, Hkv, n) -> (B, Hkv, n, D)."""
    return torch.gather(x, 2, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))


def cache_layer(cache: Any, layer_idx: int) -> Any | None:
    """The per-layer cache object holding `keys`/`values` for `layer_idx`, or None when there is none."""
    if cache is None:
        return None
    cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoder wrappers
    layers = getattr(cache, "layers", None)
    if layers is None or layer_idx >= len(layers):
        return None
    layer = layers[layer_idx]
    return layer if getattr(layer, "keys", None) is not None else None


def call_arg(args: tuple, kwargs: dict, name: str, position: int | None = None) -> Any:
    """A forward argument passed either by keyword or at `position`."""
    if name in kwargs:
        return kwargs[name]
    if position is not None and len(args) > position:
        return args[position]
    return None


def causal_probs(q: torch.Tensor, k: torch.Tensor, scaling: float, start: int) -> torch.Tensor:
    """Softmax attention of queries q (B, H, n, D) at positions start..start+n-1 over keys k (B, H, T, D) at
    positions 0..T-1, causal; returns probabilities (B, H, n, T) in float32."""
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling  # (B, H, n, T)
    rows = torch.arange(start, start + q.shape[2], device=q.device)[:, None]  # (n, 1)
    cols = torch.arange(k.shape[2], device=q.device)[None, :]  # (1, T)
    logits = logits.masked_fill(cols > rows, float("-inf"))
    return logits.softmax(dim=-1)


def drop_unpadded_mask(mask: Any, press: str) -> Any:
    """A 2D all-ones mask says nothing once cache lengths differ from token counts: drop it; refuse padding."""
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        if not bool(mask.all()):
            raise ConfigError(f"{press} does not support padded batches (the attention mask has zeros); "
                              "generate one sequence at a time or without padding")
        return None
    return mask

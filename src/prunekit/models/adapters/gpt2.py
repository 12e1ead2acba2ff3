"""Adapter for GPT-2 (fused qkv `c_attn`, transformers' `Conv1D` layers with (in, out) weights)."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter, register_adapter


@register_adapter
class GPT2Adapter(ModelAdapter):
    model_types = ("gpt2",)
    family = "gpt2"

    def blocks(self) -> nn.ModuleList:
        return self.model.transformer.h

    def embeddings(self) -> list[nn.Module]:
        return [self.model.transformer.wte, self.model.transformer.wpe]

    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f

    def attention(self, block: nn.Module) -> nn.Module:
        return block.attn

    def mlp(self, block: nn.Module) -> nn.Module:
        return block.mlp

    @property
    def hidden_size(self) -> int:
        return self.config.n_embd

    @property
    def num_heads(self) -> int:
        return self.config.n_head

    def sync_config(self) -> None:
        self.config.n_layer = len(self.blocks())

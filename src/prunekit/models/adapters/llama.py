"""Adapter for the Llama family (Llama, Qwen2, Mistral): GQA attention and GLU MLPs."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter, register_adapter


@register_adapter
class LlamaAdapter(ModelAdapter):
    model_types = ("llama", "qwen2", "mistral", "qwen3")
    family = "llama"

    def blocks(self) -> nn.ModuleList:
        return self.model.model.layers

    def embeddings(self) -> list[nn.Module]:
        return [self.model.model.embed_tokens]

    def final_norm(self) -> nn.Module:
        return self.model.model.norm

    def attention(self, block: nn.Module) -> nn.Module:
        return block.self_attn

    def mlp(self, block: nn.Module) -> nn.Module:
        return block.mlp

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.num_heads

    def sync_config(self) -> None:
        block = self.blocks()[0]
        self.config.intermediate_size = block.mlp.gate_proj.out_features
        self.config.num_hidden_layers = len(self.blocks())

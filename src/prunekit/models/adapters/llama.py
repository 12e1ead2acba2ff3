"""Adapter for the Llama family (Llama, Qwen2, Mistral): GQA attention and GLU MLPs."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from .base import ModelAdapter, register_adapter, set_uniform_widths


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
        """Write sizes the config can express (the same in every layer); per-layer widths that differ go to
        `config.prunekit_layer_widths` and the shared fields keep their old values (a plain
        from_pretrained then fails loudly; prunekit.models.load rebuilds the shapes from the saved weights)."""
        blocks = self.blocks()
        self.config.num_hidden_layers = len(blocks)
        self.config.hidden_size = self.embeddings()[0].weight.shape[1]
        head_dim = self.attention(blocks[0]).head_dim
        self.config.head_dim = head_dim  # explicit: hidden_size // num_heads no longer holds after pruning
        widths = {
            "intermediate_size": [b.mlp.gate_proj.weight.shape[0] for b in blocks],
            "num_attention_heads": [self.attention(b).q_proj.weight.shape[0] // head_dim for b in blocks],
            "num_key_value_heads": [self.attention(b).k_proj.weight.shape[0] // head_dim for b in blocks],
        }
        set_uniform_widths(self.config, widths)

    def saveable_config(self) -> Any:
        """Transformers validates hidden_size % num_attention_heads == 0 on save and load, which a pruned hidden
        size or head count can break although head_dim is explicit; then the saved copy states
        hidden_size = num_attention_heads * head_dim and the weights carry the real width."""
        config = self.config
        if config.hidden_size % config.num_attention_heads == 0:
            return config
        saved = copy.deepcopy(config)
        saved.hidden_size = config.num_attention_heads * config.head_dim
        return saved

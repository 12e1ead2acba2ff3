"""Adapter for GPT-2 (fused qkv `c_attn`, transformers' `Conv1D` layers with (in, out) weights)."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter, register_adapter, set_uniform_widths


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
        """n_inner when uniform. GPT-2 derives head_dim = n_embd / n_head and c_attn = 3 * n_embd, so the
        config cannot express pruned heads or hidden size: those are recorded in prunekit_layer_widths
        and reloaded with prunekit.models.load."""
        blocks = self.blocks()
        self.config.n_layer = len(blocks)
        inner = [b.mlp.c_fc.weight.shape[1] for b in blocks]
        set_uniform_widths(self.config, {"n_inner": inner})
        heads = [b.attn.c_proj.weight.shape[0] // b.attn.head_dim for b in blocks]
        hidden = self.embeddings()[0].weight.shape[1]
        if any(h != self.config.n_head for h in heads) or hidden != self.config.n_embd:
            self.config.prunekit_layer_widths = {"n_inner": inner, "n_head": heads, "n_embd": [hidden] * len(blocks)}

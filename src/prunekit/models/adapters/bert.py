"""Adapter for BERT encoders (e.g. all-MiniLM-L6-v2)."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter, register_adapter, set_uniform_widths


@register_adapter
class BertAdapter(ModelAdapter):
    model_types = ("bert",)
    family = "bert"
    is_causal_lm = False

    def _bert(self) -> nn.Module:
        return getattr(self.model, "bert", self.model)

    def blocks(self) -> nn.ModuleList:
        return self._bert().encoder.layer

    def embeddings(self) -> list[nn.Module]:
        emb = self._bert().embeddings
        return [emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings]

    def head(self) -> nn.Module | None:
        return None

    def attention(self, block: nn.Module) -> nn.Module:
        return block.attention

    def mlp(self, block: nn.Module) -> nn.Module:
        return block.intermediate

    def sync_config(self) -> None:
        """intermediate_size when uniform. BERT derives all_head_size from hidden_size, so pruned heads are
        recorded in prunekit_layer_widths and reloaded with prunekit.models.load."""
        blocks = self.blocks()
        self.config.num_hidden_layers = len(blocks)
        inner = [b.intermediate.dense.weight.shape[0] for b in blocks]
        set_uniform_widths(self.config, {"intermediate_size": inner})
        heads = [b.attention.self.query.weight.shape[0] // b.attention.self.attention_head_size for b in blocks]
        if any(h != self.config.num_attention_heads for h in heads):
            self.config.prunekit_layer_widths = {"intermediate_size": inner, "num_attention_heads": heads}

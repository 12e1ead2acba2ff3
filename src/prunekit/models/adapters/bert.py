"""Adapter for BERT encoders (e.g. all-MiniLM-L6-v2)."""

from __future__ import annotations

from torch import nn

from .base import ModelAdapter, register_adapter


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
        self.config.intermediate_size = self.blocks()[0].intermediate.dense.out_features
        self.config.num_hidden_layers = len(self.blocks())

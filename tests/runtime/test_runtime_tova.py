"""TOVA (Oren et al. 2024, arXiv 2401.06104): the entries kept are exactly the top ones by the last prompt query's
attention, checked against the eager attention weights transformers returns; exact eviction counts."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from prunekit.errors import ConfigError
from prunekit.runtime import make_press
from prunekit.runtime.kv import cache_lengths, keep_count
from prunekit.runtime.kv.tova import TOVAPress
from prunekit.testing import tiny_model

T = 40  # prompt length


def prefill(model, ids, press=None):
    """Prompt-only forward with a fresh cache, optionally under `press` -> cache."""
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        if press is None:
            model(ids, cache=cache, use_cache=True)
        else:
            with press(model):
                model(ids, cache=cache, use_cache=True)
    return cache


def gather(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """keys (B, Hkv, T, D), index (B, Hkv, n) -> (B, Hkv, n, D)."""
    return torch.gather(keys, 2, index[..., None].expand(-1, -1, -1, keys.shape[-1]))


@pytest.fixture(scope="module")
def eager():
    """A tiny Llama (4 query heads over 2 KV heads) computing eager attention, and the last query's weights."""
    model = tiny_model("llama", layers=2, vocab=128, attn_implementation="eager")
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions  # per layer (B, H, T, T)
    return model, ids, [weights[:, :, -1] for weights in attentions]  # per layer (B, H, T)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_keeps_the_top_entries_of_the_last_query_per_kv_group(eager, ratio):
    model, ids, last = eager
    keep = keep_count(T, ratio)
    press = TOVAPress(ratio=ratio)
    pressed, dense = prefill(model, ids, press), prefill(model, ids)
    assert cache_lengths(pressed) == [keep, keep]
    assert press.evicted_per_layer == {0: T - keep, 1: T - keep}
    for layer, weights in enumerate(last):
        scores = weights.view(1, 2, 2, T).mean(dim=2)  # (B, Hkv, T): mean over each KV head's 2 query heads
        ranked = scores.sort(dim=-1, descending=True).values
        assert bool((ranked[..., keep - 1] - ranked[..., keep] > 1e-6).all())  # no tie at the cut
        expected = scores.topk(keep, dim=-1).indices.sort(dim=-1).values  # (B, Hkv, keep) in prompt order
        assert torch.equal(pressed.layers[layer].keys, gather(dense.layers[layer].keys, expected))
        assert torch.equal(pressed.layers[layer].values, gather(dense.layers[layer].values, expected))


def test_layer_mode_evicts_the_same_positions_from_every_kv_head(eager):
    model, ids, last = eager
    pressed, dense = prefill(model, ids, TOVAPress(ratio=0.5, heads="layer")), prefill(model, ids)
    for layer, weights in enumerate(last):
        expected = weights.mean(dim=1).topk(20, dim=-1).indices.sort(dim=-1).values  # (B, 20), all 4 heads
        index = expected[:, None].expand(-1, 2, -1)  # (B, Hkv, 20)
        assert torch.equal(pressed.layers[layer].keys, gather(dense.layers[layer].keys, index))
    group = prefill(model, ids, TOVAPress(ratio=0.5))
    assert not torch.equal(group.layers[0].keys, pressed.layers[0].keys)  # the two policies differ here


@pytest.mark.parametrize("family", ["gpt2", "qwen3"])
def test_other_families_evict_the_exact_count(family):
    model = tiny_model(family, layers=2, vocab=128)
    ids = torch.randint(0, 128, (1, 33), generator=torch.Generator().manual_seed(5))
    press = TOVAPress(ratio=0.3)
    assert cache_lengths(prefill(model, ids, press)) == [33 - 9, 33 - 9]
    assert press.evicted_per_layer == {0: 9, 1: 9}


def test_options_are_checked():
    assert make_press("tova", heads="layer").heads == "layer"
    with pytest.raises(ConfigError, match="'tova.heads' must be one of group, layer, got 'all'"):
        make_press("tova", heads="all")
    with pytest.raises(ConfigError, match="heads must be one of group, layer, got 'all'"):
        TOVAPress(heads="all")

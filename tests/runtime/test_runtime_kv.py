"""(e) KV presses: exact entries per layer, cache bytes, what each scorer keeps, positions after eviction."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from prunekit.runtime import (
    H2OPress,
    KeyNormPress,
    PerLayerPress,
    SnapKVPress,
    StreamingLLMPress,
    cache_bytes,
    cache_lengths,
)
from prunekit.runtime.kv import keep_count
from prunekit.testing import tiny_model

PRESSES = {"streaming": StreamingLLMPress, "h2o": H2OPress, "snapkv": SnapKVPress, "knorm": KeyNormPress}


def prefill(model, ids, press=None):
    """Prompt-only forward with a fresh cache (optionally under a press) -> (logits, cache)."""
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        if press is None:
            return model(ids, cache=cache, use_cache=True).logits, cache
        with press(model):
            return model(ids, cache=cache, use_cache=True).logits, cache


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
@pytest.mark.parametrize("name", list(PRESSES))
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_entries_and_bytes_shrink_by_ratio(tiny, prompt, family, name, ratio):
    model = tiny(family, 2)
    ids = prompt(60)
    _, dense = prefill(model, ids)
    _, pressed = prefill(model, ids, PRESSES[name](ratio=ratio))
    keep = keep_count(60, ratio)
    assert keep == 60 - int(60 * ratio)
    assert cache_lengths(dense) == [60, 60]
    assert cache_lengths(pressed) == [keep, keep]
    assert cache_bytes(pressed) * 60 == cache_bytes(dense) * keep


def test_per_layer_ratios_exact(tiny, prompt, greedy):
    model = tiny("llama", 4)
    press = PerLayerPress(SnapKVPress(ratio=0.5, window=4), {0: 0.0, 2: 0.75, 3: 0.1})
    with press(model):
        out = greedy(model, prompt(40), 5, return_dict_in_generate=True)
    # 4 decoded tokens are cached after the prompt (the 5th is never fed back)
    assert cache_lengths(out.cache) == [40 + 4, 20 + 4, 10 + 4, 36 + 4]


def test_streaming_keeps_sinks_and_recent(tiny, prompt):
    model = tiny("llama", 2)
    _, dense = prefill(model, prompt(40))
    _, pressed = prefill(model, prompt(40), StreamingLLMPress(ratio=0.5, n_sink=4))
    kept = list(range(4)) + list(range(24, 40))
    for full, small in zip(dense.layers, pressed.layers, strict=True):
        assert torch.equal(small.keys, full.keys[:, :, kept])
        assert torch.equal(small.values, full.values[:, :, kept])


def test_knorm_keeps_lowest_norms(tiny, prompt):
    model = tiny("llama", 2)
    _, dense = prefill(model, prompt(40))
    _, pressed = prefill(model, prompt(40), KeyNormPress(ratio=0.5))
    for full, small in zip(dense.layers, pressed.layers, strict=True):
        norms = full.keys.norm(dim=-1)  # (B, Hkv, T)
        expected = norms.topk(20, dim=-1, largest=False).indices.sort(dim=-1).values
        assert torch.equal(small.keys, torch.gather(full.keys, 2, expected[..., None].expand(-1, -1, -1, 16)))


def test_h2o_matches_accumulated_eager_attention(prompt):
    model = tiny_model("llama", layers=2, vocab=128, attn_implementation="eager")
    ids = prompt(32)
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions  # per layer (B, H, T, T)
    _, pressed = prefill(model, ids, H2OPress(ratio=0.5, recent_fraction=0.0))
    _, dense = prefill(model, ids)
    for layer, weights in enumerate(attentions):
        received = weights.sum(dim=2).view(1, 2, 2, 32).mean(dim=2)  # (B, Hkv, T), query groups of 2
        expected = received.topk(16, dim=-1).indices.sort(dim=-1).values
        full = dense.layers[layer].keys
        kept = torch.gather(full, 2, expected[..., None].expand(-1, -1, -1, 16))
        assert torch.equal(pressed.layers[layer].keys, kept)


def test_h2o_default_splits_budget_between_recent_and_heavy_hitters(prompt):
    """Paper policy: half of the kept entries are the most recent ones, the rest the heaviest hitters before them."""
    model = tiny_model("llama", layers=2, vocab=128, attn_implementation="eager")
    ids = prompt(40)
    with torch.no_grad():
        attentions = model(ids, output_attentions=True).attentions
    _, pressed = prefill(model, ids, H2OPress(ratio=0.5))  # keep 20: 10 recent + 10 heavy hitters
    _, dense = prefill(model, ids)
    for layer, weights in enumerate(attentions):
        received = weights.sum(dim=2).view(1, 2, 2, 40).mean(dim=2)[..., :30]  # (B, Hkv, 30) before the window
        heavy = received.topk(10, dim=-1).indices
        expected = torch.cat([heavy, torch.arange(30, 40).expand(1, 2, 10)], dim=-1).sort(dim=-1).values
        kept = torch.gather(dense.layers[layer].keys, 2, expected[..., None].expand(-1, -1, -1, 16))
        assert torch.equal(pressed.layers[layer].keys, kept)
    with pytest.raises(ValueError, match="recent_fraction"):
        H2OPress(recent_fraction=1.5)


def test_snapkv_always_keeps_window(tiny, prompt):
    model = tiny("llama", 2)
    _, dense = prefill(model, prompt(40))
    _, pressed = prefill(model, prompt(40), SnapKVPress(ratio=0.5, window=8, pooling="max"))
    for full, small in zip(dense.layers, pressed.layers, strict=True):
        assert torch.equal(small.keys[:, :, -8:], full.keys[:, :, -8:])


def decode_step(model, cache, token, position=None):
    kwargs = {} if position is None else {"position_ids": torch.tensor([[position]])}
    with torch.no_grad():
        return model(token, cache=cache, use_cache=True, **kwargs).logits[:, -1]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_window_covering_everything_gives_dense_decode_logits(tiny, prompt, family):
    model = tiny(family, 2)
    ids, token = prompt(40), torch.tensor([[7]])
    _, dense = prefill(model, ids)
    press = StreamingLLMPress(ratio=0.0)
    with press(model):
        _, pressed = prefill(model, ids)
        logits = [decode_step(model, pressed, token), decode_step(model, pressed, torch.tensor([[9]]))]
    assert torch.equal(logits[0], decode_step(model, dense, token))
    assert torch.equal(logits[1], decode_step(model, dense, torch.tensor([[9]])))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_positions_continue_from_original_length(tiny, prompt, family):
    """After evicting half the prompt, the next token must sit at position T: equal to a dense run whose last
    query is masked from the evicted keys, and different from placing it at the shortened cache length."""
    model = tiny(family, 2)
    length, sink = 40, 4
    ids, token = prompt(length), torch.tensor([[7]])
    kept = list(range(sink)) + list(range(24, length))
    press = StreamingLLMPress(ratio=0.5, n_sink=sink)
    with press(model):
        _, cache = prefill(model, ids)
        implicit = decode_step(model, cache, token)  # no position_ids: the press supplies them
    _, cache = prefill(model, ids, StreamingLLMPress(ratio=0.5, n_sink=sink))
    explicit = decode_step(model, cache, token, position=length)
    _, cache = prefill(model, ids, StreamingLLMPress(ratio=0.5, n_sink=sink))
    shifted = decode_step(model, cache, token, position=len(kept))

    mask = torch.ones(length + 1, length + 1, dtype=torch.bool).tril()
    mask[-1, :length] = False
    mask[-1, kept] = True
    with torch.no_grad():
        reference = model(torch.cat([ids, token], 1), attention_mask=mask[None, None]).logits[:, -1]
    torch.testing.assert_close(implicit, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(implicit, explicit)
    assert not torch.allclose(shifted, reference, atol=1e-3)


def test_generate_positions_match_masked_reference(tiny, prompt, greedy):
    model = tiny("llama", 2)
    ids = prompt(40)
    with StreamingLLMPress(ratio=0.5, n_sink=4)(model):
        out = greedy(model, ids, 2, return_dict_in_generate=True, output_logits=True)
    step = out.sequences[:, 40:41]
    mask = torch.ones(41, 41, dtype=torch.bool).tril()
    mask[-1, 4:24] = False
    with torch.no_grad():
        reference = model(torch.cat([ids, step], 1), attention_mask=mask[None, None]).logits[:, -1]
    torch.testing.assert_close(out.logits[1], reference, atol=1e-5, rtol=1e-5)


def test_padded_batches_are_refused(tiny, prompt):
    model = tiny("llama", 2)
    ids = prompt(20).repeat(2, 1)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with pytest.raises(ValueError, match="padded batches"), KeyNormPress(ratio=0.5)(model):
        model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=0)

"""(d) LazyLLM: tokens per layer follow the schedule exactly; aux cache, original positions and revival."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from prunekit.runtime import LazyLLMPress, cache_lengths, keep_counts

PAPER = {"pool": 1, "keep_last": 1}  # the paper's scoring (last token, unpooled), not the press defaults


def test_keep_counts_formula():
    assert keep_counts(40, {1: 0.5, 3: 0.25}, 4) == [40, 20, 20, 10]
    assert keep_counts(7, {2: 0.5}, 3) == [7, 7, 4]
    assert keep_counts(3, {1: 0.01}, 2) == [3, 1]


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_tokens_per_layer_follow_schedule(tiny, prompt, greedy, family):
    model = tiny(family, 4)
    press = LazyLLMPress(schedule={1: 0.5, 3: 0.25}, revive=False)
    with press(model):
        out = greedy(model, prompt(40), 6, return_dict_in_generate=True)
    assert press.tokens_per_layer == [40, 20, 20, 10]
    assert {layer: entry.positions.shape[1] for layer, entry in press.aux_cache.items()} == {1: 20, 3: 10}
    # without revival, each layer caches its prefill tokens plus the 5 tokens fed back during decode
    assert cache_lengths(out.cache) == [45, 25, 25, 15]
    assert press.step_tokens_per_layer == [1, 1, 1, 1]


def test_last_token_kept_and_dropped_states_stored(tiny, prompt):
    model = tiny("llama", 4)
    ids = prompt(30)
    press = LazyLLMPress(schedule={2: 0.4}, **PAPER)
    hidden = {}

    def spy(module, args, kwargs):
        hidden["in"] = (args[0] if args else kwargs["hidden_states"]).clone()

    handle = model.model.layers[2].register_forward_pre_hook(spy, with_kwargs=True)
    try:
        with torch.no_grad(), press(model):
            logits = model(ids, cache=DynamicCache(config=model.config), use_cache=True).logits
    finally:
        handle.remove()
    entry = press.aux_cache[2]
    kept = press._layer_pos[2][0].tolist()
    assert 29 in kept and len(kept) == 12
    assert sorted(kept + entry.positions[0].tolist()) == list(range(30))
    # a pre-hook registered before the press's sees the full layer-2 input: aux rows are those rows
    assert torch.equal(entry.hidden[0], hidden["in"][0, entry.positions[0]])
    assert logits.shape == (1, 30, 128)  # scattered back to full length


def test_original_positions_kept(tiny, prompt):
    """Positions are sliced, not renumbered: layer-2 position_ids seen by the layer are the kept positions."""
    model = tiny("llama", 3)
    seen = {}

    def spy(module, args, kwargs):
        seen["pos"] = kwargs["position_ids"].clone()
        seen["cos"] = kwargs["position_embeddings"][0].clone()

    press = LazyLLMPress(schedule={2: 0.5}, **PAPER)
    with torch.no_grad(), press(model):
        handle = model.model.layers[2].register_forward_pre_hook(spy, with_kwargs=True)
        try:
            model(prompt(20))
        finally:
            handle.remove()
    kept = press._layer_pos[2]
    assert torch.equal(seen["pos"], kept)
    full_cos, _ = model.model.rotary_emb(torch.zeros(1, 20, 64), torch.arange(20)[None])
    assert torch.equal(seen["cos"][0], full_cos[0, kept[0]])


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_revival_at_last_layer_restores_dense_decode(tiny, prompt, family):
    """Pruning only at the last layer, reviving everything: the first decode step rebuilds the dense cache, so
    decode logits equal dense ones (this checks aux states, original positions and the positional mask)."""
    model = tiny(family, 3)
    ids, steps = prompt(40), [torch.tensor([[5]]), torch.tensor([[9]])]
    dense_cache, pressed_cache = DynamicCache(config=model.config), DynamicCache(config=model.config)
    press = LazyLLMPress(schedule={2: 0.5}, revive_fraction=1.0, **PAPER)
    with torch.no_grad():
        dense = [model(ids, cache=dense_cache).logits[:, -1]]
        dense += [model(t, cache=dense_cache).logits[:, -1] for t in steps]
        with press(model):
            pressed = [model(ids, cache=pressed_cache).logits[:, -1]]
            assert press.tokens_per_layer == [40, 40, 20]
            pressed += [model(t, cache=pressed_cache).logits[:, -1] for t in steps]
    assert not torch.allclose(pressed[0], dense[0], atol=1e-4)  # the pruned prefill is an approximation
    assert press.revived_per_layer == {2: 20} and not press.aux_cache
    assert press.step_tokens_per_layer == [1, 1, 1]
    assert cache_lengths(pressed_cache) == [42, 42, 42]
    for got, want in zip(pressed[1:], dense[1:], strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_partial_revival_grows_deep_caches(tiny, prompt, greedy):
    model = tiny("llama", 4)
    press = LazyLLMPress(schedule={1: 0.5, 3: 0.25}, **PAPER)
    with press(model):
        out = greedy(model, prompt(40), 6, return_dict_in_generate=True)
    revived = press.revived_per_layer
    assert revived, "the decode query selected no dropped token"
    lengths = cache_lengths(out.cache)
    assert lengths[0] == 45
    assert lengths[1] == 25 + revived.get(1, 0)
    assert lengths[3] == 15 + revived.get(1, 0) + revived.get(3, 0)
    remaining = sum(e.positions.shape[1] for e in press.aux_cache.values())
    assert remaining == 30 - sum(revived.values())


def test_keep_last_always_keeps_recent_prompt_tokens(tiny, prompt):
    model = tiny("llama", 4)
    ids = prompt(30)
    press = LazyLLMPress(schedule={2: 0.4, 3: 0.1}, keep_last=6)  # keep 12, then 3 of the last 6
    with torch.no_grad(), press(model):
        model(ids, cache=DynamicCache(config=model.config), use_cache=True)
    assert press.tokens_per_layer == [30, 30, 12, 3]
    assert set(range(24, 30)) <= set(press._layer_pos[2][0].tolist())
    assert press._layer_pos[3][0].tolist() == [27, 28, 29]  # keep < keep_last: the most recent ones
    with pytest.raises(ValueError, match="keep_last"):
        LazyLLMPress(schedule={1: 0.5}, keep_last=0)

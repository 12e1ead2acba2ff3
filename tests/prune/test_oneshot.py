"""One-shot weight pruning through the public glue, on tiny random models of every family."""

import pytest
import torch

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.methods import METHODS
from prunekit.models import load
from prunekit.pipeline import RunContext
from prunekit.recipe import parse_recipe
from prunekit.testing import CharTokenizer, tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n\n".join(f"sample text number {i} with some words " * 6 for i in range(300)))
    return str(path)


def run(family, method, corpus, **options):
    loaded = load(tiny_model(family, vocab=128))
    loaded.tokenizer = CharTokenizer()
    recipe = parse_recipe({"calibration": {"corpus": corpus, "samples": 4, "seq_len": 32}})
    config = from_dict(METHODS.get(method).config, options, method)
    details = METHODS.load(method)(loaded, config, RunContext(recipe, None).inputs(), method=method)
    return loaded, details


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_two_four_has_exactly_two_nonzeros_per_group_of_four(family, method, corpus):
    loaded, details = run(family, method, corpus, pattern="2:4")
    assert details["layers"]
    for name, module in loaded.model.named_modules():
        if name not in details["layers"]:
            continue
        weight = module.weight.data
        weight = weight.t() if type(module).__name__ == "Conv1D" else weight  # (out, in)
        groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(-1)
        assert torch.all(groups == 2), name


def test_gpt2_conv1d_layers_are_pruned_and_nothing_is_skipped_silently(corpus):
    loaded, details = run("gpt2", "wanda", corpus, ratio=0.5)
    pruned = set(details["layers"])
    expected = {f"transformer.h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                      "mlp.c_proj")}
    assert pruned == expected
    skipped = {s["layer"]: s["reason"] for s in details["skipped"]}
    assert skipped["lm_head"] == "excluded" and skipped["transformer.wte"] == "excluded"
    assert "not a Linear-like layer" in skipped["transformer.h.0.ln_1"]
    assert all(abs(v["actual"] - 0.5) < 1e-9 for v in details["layers"].values())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_uniform_sparsity_is_exact_per_layer(method, corpus):
    loaded, details = run("llama", method, corpus, ratio=0.6)
    modules = dict(loaded.model.named_modules())
    for name, info in details["layers"].items():
        pruned = round(info["actual"] * info["params"])
        rows, cols = modules[name].weight.shape
        # Wanda compares weights within each output row, so every row loses round(0.6 * cols)
        expected = rows * round(0.6 * cols) if method == "wanda" else round(0.6 * info["params"])
        assert pruned == expected, name


def test_wanda_matches_a_hand_computed_mask_on_one_block(corpus):
    """Block 0 sees the dense embeddings, so its Wanda masks follow from one hooked forward."""
    loaded = load(tiny_model("llama", vocab=128, layers=1))
    loaded.tokenizer = CharTokenizer()
    recipe = parse_recipe({"calibration": {"corpus": corpus, "samples": 4, "seq_len": 32}})
    ctx = RunContext(recipe, None)
    ids = ctx.calibration(loaded.tokenizer)
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    seen = []
    handle = q_proj.register_forward_hook(lambda m, a, o: seen.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        loaded.model(input_ids=ids)
    handle.remove()
    norm = torch.cat(seen).pow(2).sum(0)
    scores = q_proj.weight.abs() * norm.sqrt()
    expected = scores >= scores.kthvalue(32, dim=1, keepdim=True).values.nextafter(torch.tensor(float("inf")))
    config = from_dict(METHODS.get("wanda").config, {"ratio": 0.5}, "wanda")
    METHODS.load("wanda")(loaded, config, ctx.inputs(), method="wanda")
    assert torch.equal(q_proj.weight != 0, expected)


def test_rd_allocation_meets_the_budget_exactly(corpus):
    _, details = run("llama", "magnitude", corpus, ratio=0.7, allocation="rd")
    total = sum(v["params"] for v in details["layers"].values())
    pruned = sum(round(v["actual"] * v["params"]) for v in details["layers"].values())
    assert pruned == round(0.7 * total)
    ratios = {round(v["requested"], 3) for v in details["layers"].values()}
    assert len(ratios) > 1  # not uniform


def test_owl_keeps_the_parameter_weighted_mean(corpus):
    _, details = run("llama", "wanda", corpus, ratio=0.7, allocation="owl")
    layers = details["layers"].values()
    mean = sum(v["requested"] * v["params"] for v in layers) / sum(v["params"] for v in layers)
    assert abs(mean - 0.7) < 1e-6


@pytest.mark.parametrize("options, needle", [
    ({"ratio": -0.1}, "ratio (the fraction of weights removed) must be in [0, 1), got -0.1"),
    ({"ratio": 1.0}, "ratio (the fraction of weights removed) must be in [0, 1), got 1.0"),
    ({"pattern": "4:2"}, "N=4, M=2"),
    ({"pattern": "2-4"}, "'N:M' like '2:4'"),
    ({"pattern": "2:4", "allocation": "owl"}, "use allocation: uniform"),
    ({"allocation": "best"}, "'magnitude.allocation' must be one of uniform, global, owl, rd, got 'best'"),
    ({"include": ["nothing_matches_this"]}, "include pattern 'nothing_matches_this' matches no module"),
])
def test_bad_options_fail_clearly(options, needle, corpus):
    with pytest.raises(ConfigError) as err:
        run("llama", "magnitude", corpus, **options)
    assert needle in str(err.value)


@pytest.mark.slow
def test_wanda_and_sparsegpt_beat_magnitude_on_smollm2(smollm):
    """The papers' claim at 50% unstructured on a real model (small calibration and evaluation sets)."""
    import copy

    from prunekit.evaluate.perplexity import PerplexityProtocol, perplexity

    recipe = parse_recipe({"calibration": {"samples": 8, "seq_len": 256}})
    ctx = RunContext(recipe, None)
    protocol = PerplexityProtocol(window=256, windows=4)
    result = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        loaded = copy.copy(smollm)
        loaded.model = copy.deepcopy(smollm.model)
        loaded.adapter = type(smollm.adapter)(loaded.model)
        config = from_dict(METHODS.get(method).config, {"ratio": 0.5}, method)
        METHODS.load(method)(loaded, config, ctx.inputs(), method=method)
        result[method] = perplexity(loaded.model, loaded.tokenizer, protocol)
    assert result["wanda"] < result["magnitude"] / 3, result
    assert result["sparsegpt"] < result["magnitude"] / 3, result


def test_chunked_calibration_prunes_to_the_same_sparsity(corpus):
    fused, fused_details = run("llama", "sparsegpt", corpus, ratio=0.5)
    chunked, chunked_details = run("llama", "sparsegpt", corpus, ratio=0.5, max_batch_tokens=40)
    assert fused_details["actual_sparsity"] == chunked_details["actual_sparsity"] == 0.5
    # the first block sees identical inputs either way, and its first layers identical statistics
    q_fused = fused.model.model.layers[0].self_attn.q_proj.weight
    q_chunked = chunked.model.model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(q_fused, q_chunked, rtol=1e-4, atol=1e-5)


def _block_output_error(family, corpus, **options):
    """||dense - pruned||^2 of the last hidden states on the calibration corpus."""
    dense, _ = run(family, "magnitude", corpus, ratio=0.0)
    pruned, details = run(family, "sparsegpt", corpus, **options)
    ids = torch.tensor([[ord(c) % 128 for c in "sample text number 7 with some words " * 2]])
    with torch.no_grad():
        a = dense.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        b = pruned.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    return (a - b).square().sum().item(), details


def test_dense_targets_outside_zero_to_one_is_a_clear_error():
    with pytest.raises(ConfigError, match="dense_targets must be in"):
        from_dict(METHODS.get("sparsegpt").config, {"dense_targets": 1.5}, "sparsegpt")


def test_dense_targets_prune_exactly_and_track_the_dense_model_better(corpus):
    for max_tokens in (32768, 40):  # one fused pass per block, and the chunked two-pass path
        plain, _ = _block_output_error("llama", corpus, ratio=0.5, max_batch_tokens=max_tokens,
                                       dense_targets=0.0)
        asym, details = _block_output_error("llama", corpus, ratio=0.5, max_batch_tokens=max_tokens)  # 0.25
        assert details["actual_sparsity"] == 0.5 and not details["no_calibration_input"]
        assert asym < plain, (max_tokens, asym, plain)


@pytest.mark.parametrize("allocation", ["global", "rd"])
def test_random_allocates_like_magnitude_not_like_wanda(allocation, corpus):
    """Random scores rank nothing across layers: global and RD allocation use magnitude for random (RD used to
    take Wanda's scores silently)."""
    requested = {}
    for method in ("random", "magnitude"):
        _, details = run("llama", method, corpus, ratio=0.6, allocation=allocation)
        requested[method] = {name: v["requested"] for name, v in details["layers"].items()}
    assert requested["random"] == requested["magnitude"]
    assert len(set(requested["random"].values())) > 1  # not uniform

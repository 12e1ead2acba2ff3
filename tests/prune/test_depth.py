"""Depth pruning: remove whole decoder blocks by angular importance, at random, or the last ones."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.io.save import save_model
from prunekit.models import load
from prunekit.prune.depth import DepthPruneConfig, choose_blocks, prune_depth
from prunekit.testing import tiny_loaded

torch.set_num_threads(1)


def windows(n=4, t=16, seed=1):
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


def test_choose_blocks_orders():
    assert choose_blocks(6, 2, "last") == [4, 5]
    assert choose_blocks(6, 2, "angular", [0.3, 0.1, 0.5, 0.05, 0.9, 0.2]) == [1, 3]
    a, b = choose_blocks(6, 3, "random", seed=4), choose_blocks(6, 3, "random", seed=4)
    assert a == b and len(set(a)) == 3 and a == sorted(a)
    assert any(choose_blocks(6, 3, "random", seed=s) != a for s in range(5))


def test_config_counts_and_validation():
    assert DepthPruneConfig(blocks=0.5).count(4) == 2
    assert DepthPruneConfig(blocks=3).count(4) == 3
    with pytest.raises(ConfigError):
        DepthPruneConfig(blocks=4).count(4)
    with pytest.raises(ConfigError):
        DepthPruneConfig(order="first")
    with pytest.raises(ConfigError):
        DepthPruneConfig(blocks=1.5)


@pytest.mark.parametrize("order", ["angular", "random", "last"])
def test_depth_pruning_removes_blocks_generates_and_reloads(order, tmp_path):
    loaded = tiny_loaded("llama", layers=4)
    model = loaded.model
    originals = list(model.model.layers)
    report = prune_depth(loaded, DepthPruneConfig(blocks=2, order=order, seed=1), method="depth",
                         windows=windows())
    removed = report["removed"]
    assert len(removed) == 2 and report["blocks_after"] == 2
    if order == "last":
        assert removed == [2, 3]
    if order == "angular":
        imp = report["importance"]
        assert max(imp[i] for i in removed) <= min(imp[i] for i in range(4) if i not in removed)
    kept = [originals[i] for i in range(4) if i not in removed]
    assert list(model.model.layers) == kept
    assert model.config.num_hidden_layers == 2
    assert [b.self_attn.layer_idx for b in model.model.layers] == [0, 1]
    prompt = windows(1, 6, seed=2)
    with torch.no_grad():
        cached = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        plain = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(cached, plain) and cached.shape[1] == 12
    save_model(loaded, tmp_path / "m", plan=report)
    again = load(str(tmp_path / "m"))
    assert len(again.model.model.layers) == 2
    with torch.no_grad():
        tokens = again.model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(tokens, cached)

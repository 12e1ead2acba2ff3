"""Gradient statistics: mean gradient and empirical Fisher equal the per-window autograd sums, and the model's
gradient state is restored."""

import pytest
import torch

from prunekit.calib.gradients import GradientCollector, lm_gradient_statistics
from prunekit.testing import tiny_model

torch.set_num_threads(1)


def test_mean_gradient_and_fisher_match_per_window_autograd():
    model = tiny_model("llama", vocab=64, layers=1)
    windows = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(0))
    q = model.model.layers[0].self_attn.q_proj.weight
    down = model.model.layers[0].mlp.down_proj.weight
    grads = []
    for ids in windows:
        logits = model(input_ids=ids[None]).logits[0]  # (T, vocab)
        loss = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
        grads.append(torch.autograd.grad(loss, [q, down]))
    stats = lm_gradient_statistics(model, {"q": q, "down": down}, windows)
    for i, name in enumerate(("q", "down")):
        per_window = torch.stack([g[i] for g in grads])  # (3, out, in)
        torch.testing.assert_close(stats[name]["gradient"], per_window.mean(0))
        torch.testing.assert_close(stats[name]["fisher"], per_window.square().mean(0))
    assert stats["q"]["fisher"].shape == q.shape and (stats["q"]["fisher"] > 0).any()


def test_gradient_state_is_restored_also_after_an_error():
    model = tiny_model("llama", vocab=64, layers=1)
    frozen = model.model.embed_tokens.weight
    frozen.requires_grad_(False)
    q = model.model.layers[0].self_attn.q_proj.weight
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    lm_gradient_statistics(model, {"q": q}, torch.randint(0, 64, (2, 8)))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())
    handle = model.model.layers[0].register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        lm_gradient_statistics(model, {"frozen": frozen}, torch.randint(0, 64, (2, 8)))
    handle.remove()
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


def test_collector_refuses_an_empty_result_and_an_unused_weight():
    unused = torch.nn.Parameter(torch.ones(2, 2))
    collector = GradientCollector({"w": unused})
    with pytest.raises(RuntimeError, match="before any add_sample"):
        collector.result()
    with pytest.raises(RuntimeError, match="weight 'w' has no gradient"):
        collector.add_sample()

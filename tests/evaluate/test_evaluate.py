import math

import pytest
import torch

from prunekit.core.memory import PeakMemory
from prunekit.evaluate.efficiency import count_parameters, interleaved_medians, macs_per_token
from prunekit.evaluate.perplexity import perplexity_of_windows
from prunekit.models import load
from prunekit.testing import tiny_model


class UniformLM(torch.nn.Module):
    """Predicts a uniform distribution: its perplexity is exactly the vocabulary size."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, use_cache=False):
        logits = torch.zeros(*input_ids.shape, self.vocab)

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_perplexity_of_uniform_model_is_vocab_size():
    ids = torch.randint(0, 50, (3, 17))
    assert math.isclose(perplexity_of_windows(UniformLM(50), ids, batch_size=2), 50.0, rel_tol=1e-5)


def test_perplexity_matches_manual_cross_entropy():
    model = tiny_model("llama", vocab=64)
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), ids[:, 1:].reshape(-1))
    assert math.isclose(perplexity_of_windows(model, ids, batch_size=3), nll.exp().item(), rel_tol=1e-5)


def test_parameter_counts_see_zeros_and_tied_weights():
    model = tiny_model("llama", vocab=64, tie_word_embeddings=True)
    total = sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.zero_()
    counts = count_parameters(model)
    assert counts["total"] == total
    assert counts["nonzero"] == total - model.model.layers[0].mlp.down_proj.weight.numel()
    body = count_parameters(model, exclude_embeddings=True)
    assert body["total"] == total - 64 * 64


def test_macs_per_token_matches_hand_count():
    loaded = load(tiny_model("llama", vocab=64, layers=2))
    # per block: q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64; head 64x64
    linear = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3) + 64 * 64
    attention = 2 * 2 * 4 * 16 * (10 + 1) / 2  # layers * (QK + AV) * heads * head_dim * mean keys
    macs = macs_per_token(loaded.model, loaded.adapter, seq_len=10)
    assert macs["dense"] == linear + attention
    assert macs["nonzero"] == macs["dense"]


def _touch_fresh_pages(size: int):
    """Map `size` bytes the process has never held and write every page: resident memory must grow by `size`.

    A torch tensor would come from the allocator, which may hand back freed pages that are still resident
    (as on the CI machine after earlier tests), and then RSS does not move.
    """
    import mmap

    block = mmap.mmap(-1, size)
    torch.frombuffer(block, dtype=torch.uint8).fill_(1)
    return block


@pytest.fixture
def no_garbage_collection():
    """Collect first and pause the collector: freeing an earlier test's model inside the block would hide ours."""
    import gc

    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_peak_memory_sees_an_allocation(no_garbage_collection):
    import time

    with PeakMemory() as mem:
        block = _touch_fresh_pages(64 * 1024 * 1024)  # alive for many 5 ms samples
        time.sleep(0.1)
        block.close()
    assert mem.peak - mem.start > 50 * 1024 * 1024


def test_peak_memory_sees_a_short_allocation_through_the_kernel_mark(no_garbage_collection):
    from prunekit.core import memory

    if not memory._reset_high_water_mark():
        pytest.skip("this kernel does not let a process reset its peak RSS")
    with PeakMemory(interval=10.0) as mem:  # the sampler never wakes inside the block
        _touch_fresh_pages(64 * 1024 * 1024).close()
        with PeakMemory() as inner:  # nested: must not reset the outer mark
            pass
    assert mem._exact and not inner._exact
    assert mem.peak - mem.start > 50 * 1024 * 1024


def test_interleaved_medians_orders_work():
    import time

    medians = interleaved_medians({"short": lambda: time.sleep(0.001), "long": lambda: time.sleep(0.02)}, repeats=3)
    assert medians["long"] > medians["short"]


def test_the_terminal_table_keeps_long_variant_names_and_every_header_at_80_columns(capsys, monkeypatch):
    from prunekit.evaluate.report import COLUMNS, print_table

    monkeypatch.setenv("COLUMNS", "80")
    metrics = {"perplexity": 23.86, "params_body_nonzero": 1.3e8, "sparsity_body": 0.5, "macs_per_token": 2.6e8,
               "prefill_seconds": 0.4, "decode_tokens_per_second": 30.0, "peak_rss_bytes": 2e9}
    names = ["dense", "sparsegpt-2of4-dense-targets-then-lora-healed", "flap-bias-angular-30-percent-recovered"]
    report = {"recipe": {"name": "a-recipe-with-a-long-name"}, "model": {"spec": "smollm2-135m"},
              "results": [{"variant": n, "metrics": metrics, "stages": []} for n in names]}
    print_table(report)
    out = capsys.readouterr().out
    for text in names + [header for _, header, _ in COLUMNS]:
        assert text in out, text
    assert "…" not in out

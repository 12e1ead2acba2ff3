"""Recovery data selection: PASER's pieces (JSD, clustering, budget, ranking, conflict filter), the selected
stream, and select: random / paser end to end through recover()."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from prunekit.core.typed import from_dict
from prunekit.errors import ConfigError
from prunekit.recover import RecoverConfig
from prunekit.recover.paser import (
    allocate_budget,
    choose,
    cluster,
    conflict_filter,
    efficiency,
    jsd,
    kmeans,
    select_paser,
)
from prunekit.recover.run import recover
from prunekit.recover.selection import SelectedStream, draw_candidates
from prunekit.testing import CharTokenizer, tiny_loaded

torch.set_num_threads(1)


class ByteTokenizer(CharTokenizer):
    def decode(self, ids):
        return bytes(ids).decode("latin-1")


class BigramLM(torch.nn.Module):
    """logits of the next token = table[current token] (V, V)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])


def byte_histogram(texts):
    """A stand-in sentence embedding: the normalised byte histogram of each text."""
    rows = [torch.bincount(torch.tensor([ord(c) for c in t]), minlength=128).float() for t in texts]
    return F.normalize(torch.stack(rows), dim=-1)


def test_jsd_matches_its_definition():
    p_logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    q_logits = torch.tensor([[0.5, 0.5, 0.0], [1.0, -2.0, 0.3]])
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    m = (p + q) / 2
    kl = lambda a, b: (a * (a / b).log()).sum(-1)  # noqa: E731
    torch.testing.assert_close(jsd(p_logits, q_logits), kl(p, m) / 2 + kl(q, m) / 2, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(jsd(p_logits, q_logits), jsd(q_logits, p_logits))  # symmetric
    assert jsd(p_logits, p_logits).abs().max() < 1e-7  # identical models: zero (up to rounding)
    disjoint = jsd(torch.tensor([60.0, 0.0]), torch.tensor([0.0, 60.0]))
    assert disjoint.item() == pytest.approx(math.log(2.0), abs=1e-6)  # the upper bound, ln 2


def three_blobs(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + torch.randn(15, 2, generator=g) for c in centres])  # (45, 2)
    return points, torch.arange(3).repeat_interleave(15)


def same_partition(a, b):
    return all(len(set(b[a == c].tolist())) == 1 for c in a.unique()) and len(a.unique()) == len(b.unique())


def test_kmeans_and_spectral_clustering_are_deterministic_and_find_the_blobs():
    points, truth = three_blobs()
    for fn in (kmeans, cluster):
        first = fn(points, 3, seed=5)
        assert torch.equal(first, fn(points, 3, seed=5))  # same seed, same labels
        assert same_partition(first, truth) and same_partition(fn(points, 3, seed=11), truth)
    assert kmeans(points[:2], 3).tolist() in ([0, 1], [1, 0])  # k is capped by the number of points


def test_budget_is_proportional_capped_and_exact():
    shares = torch.tensor([0.1, 0.2, 0.7])
    assert allocate_budget(shares, torch.tensor([100, 100, 100]), 10).tolist() == [1, 2, 7]
    # quotas 0.98, 4.24, 6.78: floors 0, 4, 6, the two units left go to the largest remainders (0.98, 0.78)
    assert allocate_budget(torch.tensor([0.98, 4.24, 6.78]), torch.tensor([12, 12, 12]), 12).tolist() == [1, 4, 7]
    # the third group holds only 3: its excess goes 1:2 to the others (2 and 4), the last unit to the larger share
    assert allocate_budget(shares, torch.tensor([10, 10, 3]), 10).tolist() == [2, 5, 3]
    assert allocate_budget(shares, torch.tensor([1, 1, 1]), 10).tolist() == [1, 1, 1]  # at most what they hold
    assert allocate_budget(torch.tensor([0.0, 1.0]), torch.tensor([5, 2]), 4).tolist() == [2, 2]  # zero share: last
    assert allocate_budget(torch.zeros(3), torch.tensor([4, 4, 4]), 2).tolist() == [1, 1, 0]  # no signal: even
    assert allocate_budget(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([9, 9, 9]), 4).sum() == 4


def test_conflict_filter_drops_exactly_the_windows_the_pruned_model_already_gets_right():
    scores = torch.tensor([0.0, 0.0005, 0.2, 0.3, 0.4, 0.001])
    pruned_loss = torch.tensor([3.0, 3.0, 2.0, 5.0, 4.0, 3.1])
    dense_loss = torch.tensor([2.0, 2.0, 2.5, 4.0, 4.0, 3.0])
    # 0, 1: JSD below the floor; 2: pruned loss below dense; 4: equal loss; 3 and 5 stay
    assert conflict_filter(scores, pruned_loss, dense_loss, 1e-3).tolist() == [False, False, False, True, False, True]


def test_within_a_cluster_the_most_degraded_per_cost_come_first():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    score = efficiency(torch.tensor([0.1, 0.3, 0.2, 0.5, 0.4, 0.9]), torch.tensor([8, 8, 8, 8, 8, 8]))
    keep = torch.tensor([True, True, True, True, True, False])
    assert choose(labels, torch.tensor([2, 1]), score, keep) == [1, 2, 3]  # 5 is filtered out
    # a longer window costs more: the same JSD ranks lower
    assert float(efficiency(torch.tensor([0.3]), torch.tensor([64]))) < float(efficiency(torch.tensor([0.3]),
                                                                                           torch.tensor([8])))


def damaged_topics():
    """Three topics of windows (bytes 10-29, 40-59, 70-89, each counting up by one); the dense model predicts the
    next byte, the pruned one predicts it less well on topic 0, worse on 1 and much worse on 2."""
    vocab = 128
    ranges = [(10, 30), (40, 60), (70, 90)]
    dense_table = torch.zeros(vocab, vocab)
    pruned_table = torch.zeros(vocab, vocab)
    for (lo, hi), confidence in zip(ranges, [4.0, 2.5, 0.5], strict=True):
        for t in range(lo, hi):
            successor = lo + (t - lo + 1) % (hi - lo)
            dense_table[t, successor] = 5.0
            pruned_table[t, successor] = confidence
    g = torch.Generator().manual_seed(0)
    windows = []
    for lo, hi in ranges:
        starts = torch.randint(lo, hi, (12,), generator=g)
        windows.append(torch.stack([lo + (s - lo + torch.arange(16)) % (hi - lo) for s in starts]))
    pruned = SimpleNamespace(model=BigramLM(pruned_table), tokenizer=ByteTokenizer(vocab))
    return pruned, BigramLM(dense_table), torch.cat(windows)  # (36, 16): rows 0-11 topic 0, ...


def test_paser_gives_the_most_damaged_cluster_the_largest_budget():
    pruned, dense, windows = damaged_topics()
    chosen, report = select_paser(pruned, dense, windows, 12, clusters=3, embed_texts=byte_histogram)
    topics = [sum(1 for i in chosen if i // 12 == t) for t in range(3)]
    assert len(chosen) == 12 and len(set(chosen)) == 12 and report["filtered"] == 0 and report["backfilled"] == 0
    assert topics[2] > topics[1] > topics[0]  # budget follows the degradation
    by_size = sorted(report["per_cluster"], key=lambda c: c["degradation"])
    assert [c["size"] for c in by_size] == [12, 12, 12]  # the clusters are the topics
    assert [c["chosen"] for c in by_size] == topics
    shares = torch.tensor([c["degradation"] for c in by_size])
    assert topics == allocate_budget(shares, torch.tensor([12, 12, 12]), 12).tolist()
    assert report["jsd_chosen"] > report["jsd_candidates"]
    again, _ = select_paser(pruned, dense, windows, 12, clusters=3, embed_texts=byte_histogram)
    assert again == chosen
    # a JSD floor between topics 0 and 1 drops topic 0: its budget goes to topics 1 and 2
    floor = (by_size[0]["degradation"] + by_size[1]["degradation"]) / 2
    dropped, report = select_paser(pruned, dense, windows, 12, clusters=3, min_jsd=floor, embed_texts=byte_histogram)
    assert report["filtered"] == 12 and report["backfilled"] == 0 and all(i >= 12 for i in dropped)
    assert [sum(1 for i in dropped if i // 12 == t) for t in (1, 2)] == \
        allocate_budget(shares[1:], torch.tensor([12, 12]), 12).tolist()
    # a floor above ln 2 drops every window: the gap is filled from them by the same budget
    refilled, report = select_paser(pruned, dense, windows, 12, clusters=3, min_jsd=1.0, embed_texts=byte_histogram)
    assert refilled == chosen and report["filtered"] == 36 and report["backfilled"] == 12


def test_selected_stream_serves_only_the_selected_windows_and_resumes():
    candidates = torch.arange(20 * 4).view(20, 4)  # row i holds 4i .. 4i+3
    sources = torch.tensor([0] * 8 + [1] * 12)
    chosen = [1, 3, 4, 9, 10, 15, 19]  # corpus 0: 1, 3, 4; corpus 1: 9, 10, 15, 19
    stream = SelectedStream(candidates, sources, chosen, ["a", "b"], 4, seed=3)
    assert [t.shape[0] for t in stream.windows] == [3, 4] and stream.weights == [3.0, 4.0]
    served = [row[0].item() // 4 for step in range(7) for row in stream.batch(step, 1)[0]]
    assert sorted(served) == chosen  # one pass over the pool: each selected window exactly once
    ids, batch_sources = stream.batch(7, 7)
    assert sorted(ids[:, 0].div(4).tolist()) == chosen and batch_sources.tolist() == [0, 0, 0, 1, 1, 1, 1]
    state = copy.deepcopy(stream.state_dict())
    ahead = [stream.batch(8 + i, 3) for i in range(4)]
    fresh = SelectedStream(candidates, sources, [0, 2], ["a", "b"], 4, seed=3)  # another pool: the state's wins
    fresh.load_state_dict(state)
    for i, (ids, srcs) in enumerate(ahead):
        again = fresh.batch(8 + i, 3)
        assert torch.equal(again[0], ids) and torch.equal(again[1], srcs)
    stream.weights = [0.0, 1.0]  # a plug-in reweights: only corpus 1 is served
    assert stream.batch(12, 5)[1].tolist() == [1] * 5


def test_candidates_are_apportioned_by_the_mixture_weights():
    stream = SimpleNamespace(windows=[torch.arange(40).view(10, 4), 100 + torch.arange(12).view(3, 4)],
                             weights=[1.0, 1.0])
    ids, sources = draw_candidates(stream, 8, seed=1)
    assert sources.tolist() == [0] * 5 + [1] * 3  # corpus 1 holds only 3: the rest goes to corpus 0
    assert len({tuple(r) for r in ids.tolist()}) == 8 and all((ids[sources == 1] >= 100).flatten())
    assert torch.equal(draw_candidates(stream, 8, seed=1)[0], ids)


@pytest.fixture
def corpora(tmp_path):
    animals, code = tmp_path / "animals.txt", tmp_path / "code.txt"
    animals.write_text("\n\n".join(f"the {w} sat on the mat and the {w} ran home {i}." for i in range(300)
                                   for w in ("cat", "dog", "fox")))
    code.write_text("\n\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}" for i in range(900)))
    return [str(animals), str(code)]


def small(corpora, **overrides):
    options = {"tokens": 6 * 4 * 32, "seq_len": 32, "batch_size": 4, "micro_batch_size": 2, "lr": 5e-3,
               "corpus": corpora, "report_corpora": corpora[:1], "report_windows": 1, "eval_windows": 1,
               "checkpoint_every": 0, "rank": 4, "alpha": 8.0, "precision": "fp32", **overrides}
    return from_dict(RecoverConfig, options, "recover")


def student_and_teacher():
    teacher = tiny_loaded("llama", layers=2, vocab=256)
    student = copy.copy(teacher)
    student.model = copy.deepcopy(teacher.model)
    student.adapter = type(teacher.adapter)(student.model)
    student.tokenizer = ByteTokenizer(256)
    with torch.no_grad():
        for name, module in student.model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                module.weight.mul_(torch.rand(module.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5)
    return student, teacher


@pytest.mark.parametrize("select", ["random", "paser"])
def test_selection_runs_end_to_end_and_trains_only_on_the_pool(select, corpora, monkeypatch):
    student, teacher = student_and_teacher()
    served = []
    original = SelectedStream.batch

    def spy(self, step, size):
        ids, sources = original(self, step, size)
        pool = {tuple(r) for r in self.candidates[self.chosen].tolist()}
        served.extend(tuple(r) in pool for r in ids.tolist())
        return ids, sources

    monkeypatch.setattr(SelectedStream, "batch", spy)
    config = small(corpora, select=select, select_tokens=12 * 32, paser_clusters=3)
    details = recover(student, config, teacher=teacher)
    selection = details["selection"]
    assert selection["select"] == select and selection["windows"] == 12 and selection["tokens"] == 12 * 32
    assert selection["candidates"] == 48 and sum(selection["per_corpus"].values()) == 12
    assert details["tokens"] == 6 * 4 * 32 and len(served) == 24 and all(served)
    if select == "paser":
        assert sum(c["chosen"] for c in selection["per_cluster"]) == 12 and selection["clusters"] == 3
        assert sum(sum(c["groups"].values()) for c in selection["per_cluster"]) == 48
    fresh, _ = student_and_teacher()
    again = recover(fresh, config, teacher=teacher)["selection"]  # deterministic for the seed
    assert {**again, "seconds": 0} == {**selection, "seconds": 0}


def test_bad_selection_options_fail_with_clear_errors(corpora):
    for key, value, match in [("select", "best", "select' must be one of all, random, paser"),
                              ("select_tokens", 5, "select_tokens must be 0 .* or at least seq_len"),
                              ("paser_clusters", 0, "paser_clusters must be a positive"),
                              ("paser_candidates", -1, "paser_candidates must be >= 0")]:
        with pytest.raises(ConfigError, match=match):
            from_dict(RecoverConfig, {key: value}, "recover")
    with pytest.raises(ConfigError, match="paser_candidates must be 0 or at least the 391 windows selected"):
        from_dict(RecoverConfig, {"select": "random", "paser_candidates": 3}, "recover")
    student, teacher = student_and_teacher()
    with pytest.raises(ConfigError, match="select 'paser' scores windows with a teacher"):
        recover(student, small(corpora, select="paser"))
    with pytest.raises(ConfigError, match="hold .* lower select_tokens"):
        recover(student, small(corpora, select="random", select_tokens=10**6))
    student.tokenizer = CharTokenizer(256)
    with pytest.raises(ConfigError, match="no decode"):
        recover(student, small(corpora, select="paser"), teacher=teacher)
    assert not any("lora" in n for n, _ in student.model.named_parameters())

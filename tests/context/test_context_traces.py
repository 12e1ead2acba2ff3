"""DeepPrune on simulated traces: token savings, majority answer, a distinct minority survives."""

from __future__ import annotations

import pytest

from prunekit.context import (
    DeepPruneRunner,
    HeuristicJudge,
    extract_answer,
    ngram_jaccard,
    simulate_traces,
    trace_generators,
)


@pytest.mark.parametrize("seed", range(6))
def test_deepprune_claims_on_simulated_traces(seed):
    traces = simulate_traces(k=16, agree=0.8, seed=seed)
    assert sum(t.group == "minority" for t in traces) == 3
    full = sum(len(t.text.split()) for t in traces)  # every trace run to completion
    result = DeepPruneRunner(check_every_tokens=32, warmup_tokens=64).run(trace_generators(traces))
    assert result.generated_tokens <= 0.4 * full  # >= 60% fewer tokens
    assert result.answer == "42"  # the majority answer
    finished_minority = [s for s in result.traces if s.finished and traces[s.index].group == "minority"]
    assert finished_minority and all(s.text.strip() == traces[s.index].text.strip() for s in finished_minority)
    assert result.votes["42"] == 13 and result.votes["17"] == 3
    assert sorted(i for c in result.clusters for i in c) == list(range(16))


def test_without_pruning_everything_runs():
    traces = simulate_traces(k=6, seed=1)
    never = DeepPruneRunner(judge=ConstantJudge(0.0), warmup_tokens=10).run(trace_generators(traces))
    assert never.pruned == [] and never.generated_tokens == sum(len(t.text.split()) for t in traces)
    always = DeepPruneRunner(judge=ConstantJudge(1.0), warmup_tokens=10).run(trace_generators(traces))
    assert len(always.clusters) == 1 and len(always.pruned) == 5


class ConstantJudge:
    """Always returns the same probability."""

    def __init__(self, p: float):
        self.p = p

    def same(self, trace_a, trace_b):
        return self.p


def test_recheck_merges_traces_that_converge_later():
    # different openings, identical continuations: judged apart at warm-up, merged at a later check
    tail = " ".join(f"shared step {i} of the same argument." for i in range(30))
    gens = [iter([f"alpha opening words here now. {tail} answer is 5"[j : j + 40]
                  for j in range(0, 400, 40)]),
            iter([f"omega beginning other tokens. {tail} answer is 5"[j : j + 40]
                  for j in range(0, 400, 40)])]
    result = DeepPruneRunner(HeuristicJudge(threshold=0.5), check_every_tokens=10, warmup_tokens=5).run(gens)
    assert len(result.clusters) == 1 and result.pruned == [1]


def test_judge_and_answer_helpers():
    assert extract_answer("so far the answer is 42. Then \\boxed{17}") == "17"
    assert extract_answer("Final answer: $3/4$.") == "3/4"
    assert extract_answer("no answer yet") is None
    assert ngram_jaccard("a b c d", "a b c d") == 1.0 and ngram_jaccard("a b c", "x y z") == 0.0
    judge = HeuristicJudge()
    assert judge.same("we add the numbers, so the answer is 4", "we add the numbers, so the answer is 4")
    assert not judge.same("we add the numbers, so the answer is 4", "we add the numbers, so the answer is 5")
    with pytest.raises(ValueError, match="threshold=0"):
        HeuristicJudge(threshold=0)
    with pytest.raises(ValueError, match="tau=2"):
        DeepPruneRunner(tau=2)
    with pytest.raises(ValueError, match="at least one"):
        DeepPruneRunner().run([])

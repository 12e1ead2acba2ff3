"""DeepPrune: stop redundant parallel reasoning traces early (Tu et al. 2025, "DeepPrune: Parallel
Scaling without Inter-trace Redundancy", arXiv 2510.08483).

:class:`DeepPruneRunner` advances ``k`` trace generators (iterables of text chunks) round-robin and
clusters them online and greedily:

- A trace is first judged once it has ``warmup_tokens`` tokens (or when it finishes earlier): it is
  compared with the representative of every cluster, both texts cut to the shorter one's length. If the
  best judgement passes ``tau`` it joins that cluster and is stopped (its generator is closed);
  otherwise it founds a new cluster and keeps running as its representative.
- Every ``check_every_tokens`` tokens afterwards a running representative is compared again with the
  representatives of older clusters and merged into the first one it matches (and stopped), which
  catches traces that converge later.
- At the end each cluster votes for its representative's final answer with weight = cluster size.

The judge is pluggable (:class:`Judge`, returning a bool or a probability); :class:`HeuristicJudge`
mixes exact match of the extracted partial answers with word n-gram Jaccard of the traces. Tokens are
counted by ``count_tokens`` (default: whitespace-separated words); ``generated_tokens`` is what was
actually pulled from the generators.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prunekit.errors import ConfigError

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_STATED = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*\$?([^\s,;$]+?)[.\s,;$]*(?:\s|$)", re.I)
_WORD = re.compile(r"\w+")


@runtime_checkable
class Judge(Protocol):
    """Decides whether two partial traces will reach the same answer."""

    def same(self, trace_a: str, trace_b: str) -> bool | float: ...


def extract_answer(text: str) -> str | None:
    """The last ``\\boxed{..}`` or "answer is / answer: X" in ``text``, normalised; None if absent."""
    found = _BOXED.findall(text) or _STATED.findall(text)
    return normalize_answer(found[-1]) if found else None


def normalize_answer(answer: str) -> str:
    return answer.strip().strip("$.").replace(" ", "").lower()


def ngram_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of lower-cased word n-grams (unigrams when a text has fewer than n words)."""
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    size = n if min(len(wa), len(wb)) >= n else 1
    ga = {tuple(wa[i : i + size]) for i in range(len(wa) - size + 1)}
    gb = {tuple(wb[i : i + size]) for i in range(len(wb) - size + 1)}
    return len(ga & gb) / len(ga | gb) if ga or gb else 0.0


@dataclass
class HeuristicJudge:
    """``score = answer_weight * [same partial answer] + (1 - answer_weight) * n-gram Jaccard`` when
    both traces state an answer so far, else the Jaccard alone; ``same`` is ``score >= threshold``."""

    threshold: float = 0.5
    n: int = 3
    answer_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.answer_weight <= 1 or not 0 < self.threshold <= 1 or self.n < 1:
            raise ConfigError(
                f"HeuristicJudge(threshold={self.threshold}, n={self.n}, answer_weight={self.answer_weight}) "
                "is invalid; valid: threshold in (0, 1], n >= 1, answer_weight in [0, 1]."
            )

    def score(self, trace_a: str, trace_b: str) -> float:
        jaccard = ngram_jaccard(trace_a, trace_b, self.n)
        ans_a, ans_b = extract_answer(trace_a), extract_answer(trace_b)
        if ans_a is None or ans_b is None:
            return jaccard
        return self.answer_weight * float(ans_a == ans_b) + (1 - self.answer_weight) * jaccard

    def same(self, trace_a: str, trace_b: str) -> bool:
        return self.score(trace_a, trace_b) >= self.threshold


@dataclass
class TraceState:
    """One trace during and after a run."""

    index: int
    text: str = ""
    tokens: int = 0
    finished: bool = False
    pruned: bool = False
    cluster: int | None = None
    last_check: int = 0

    @property
    def active(self) -> bool:
        return not (self.finished or self.pruned)


@dataclass
class DeepPruneResult:
    """Outcome: majority answer, cluster-size votes, clusters (representative first) and token counts."""

    answer: str | None
    votes: dict[str, int]
    clusters: list[list[int]]
    traces: list[TraceState]
    generated_tokens: int
    judge_calls: int = 0
    pruned: list[int] = field(default_factory=list)


def _word_count(text: str) -> int:
    return len(text.split())


class DeepPruneRunner:
    """Round-robin generation with online greedy clustering of partial traces (DeepPrune)."""

    def __init__(self, judge: Judge | None = None, check_every_tokens: int = 64, warmup_tokens: int = 128,
                 tau: float = 0.5, count_tokens: Callable[[str], int] | None = None,
                 answer_extractor: Callable[[str], str | None] = extract_answer):
        if check_every_tokens < 1 or warmup_tokens < 0:
            raise ConfigError(f"check_every_tokens={check_every_tokens}, warmup_tokens={warmup_tokens} are "
                              "invalid; valid: check_every_tokens >= 1 and warmup_tokens >= 0.")
        if not 0 < tau <= 1:
            raise ConfigError(f"tau={tau} is invalid; valid: a float in (0, 1].")
        self.judge = judge if judge is not None else HeuristicJudge()
        self.check_every_tokens, self.warmup_tokens, self.tau = check_every_tokens, warmup_tokens, tau
        self.count_tokens = count_tokens or _word_count
        self.answer_extractor = answer_extractor

    def _same(self, a: str, b: str) -> float:
        self._calls += 1
        cut = min(len(a), len(b))
        verdict = self.judge.same(a[:cut], b[:cut])
        return float(verdict)

    def _stop(self, state: TraceState, iterator: Iterator[str]) -> None:
        state.pruned = True
        close = getattr(iterator, "close", None)
        if close is not None:
            close()

    def _assign(self, state: TraceState, iterator: Iterator[str]) -> None:
        """First judgement: join the best-matching cluster (and stop) or found a new one."""
        best, best_score = None, -1.0
        for c, members in enumerate(self._clusters):
            score = self._same(state.text, self._states[members[0]].text)
            if score > best_score:
                best, best_score = c, score
        if best is not None and best_score >= self.tau:
            state.cluster = best
            self._clusters[best].append(state.index)
            if not state.finished:
                self._stop(state, iterator)
        else:
            state.cluster = len(self._clusters)
            self._clusters.append([state.index])

    def _recheck(self, state: TraceState, iterator: Iterator[str]) -> None:
        """A running representative merges into the first older cluster it now matches."""
        own = state.cluster
        assert own is not None
        for c in range(own):
            members = self._clusters[c]
            if members and self._same(state.text, self._states[members[0]].text) >= self.tau:
                moved = self._clusters[own]
                self._clusters[own] = []
                members.extend(moved)
                for i in moved:
                    self._states[i].cluster = c
                self._stop(state, iterator)
                return

    def run(self, generators: Sequence[Iterable[str]]) -> DeepPruneResult:
        """Run all traces to completion or pruning; return the cluster-size-weighted majority answer."""
        if not generators:
            raise ConfigError("DeepPruneRunner.run needs at least one trace generator.")
        iterators = [iter(g) for g in generators]
        self._states = [TraceState(i) for i in range(len(iterators))]
        self._clusters: list[list[int]] = []
        self._calls = 0
        while any(s.active for s in self._states):
            for state, iterator in zip(self._states, iterators, strict=True):
                if not state.active:
                    continue
                try:
                    chunk = next(iterator)
                    state.text += chunk
                    state.tokens += self.count_tokens(chunk)
                except StopIteration:
                    state.finished = True
                if state.cluster is None:
                    if state.finished or state.tokens >= self.warmup_tokens:
                        self._assign(state, iterator)
                        state.last_check = state.tokens
                elif state.active and state.tokens - state.last_check >= self.check_every_tokens:
                    state.last_check = state.tokens
                    self._recheck(state, iterator)
        return self._result()

    def _result(self) -> DeepPruneResult:
        clusters = [members for members in self._clusters if members]
        votes: dict[str, int] = {}
        for members in clusters:
            representative = self._states[members[0]]
            answer = self.answer_extractor(representative.text) if representative.finished else None
            if answer is not None:
                votes[answer] = votes.get(answer, 0) + len(members)
        winner = max(votes, key=lambda a: votes[a]) if votes else None  # ties: first cluster's answer
        return DeepPruneResult(
            answer=winner, votes=votes, clusters=clusters, traces=self._states,
            generated_tokens=sum(s.tokens for s in self._states), judge_calls=self._calls,
            pruned=[s.index for s in self._states if s.pruned],
        )

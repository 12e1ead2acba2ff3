"""Provence-style sentence pruning (Chirkova et al. 2025, "Provence: efficient and robust context
pruning for retrieval-augmented generation", ICLR 2025, arXiv 2501.16214).

Each sentence (see :mod:`prunekit.context.units`) is scored against the query by a pluggable
:class:`SentenceScorer`; the default :class:`MiniLMScorer` is the cosine of MiniLM embeddings, and
:class:`prunekit.context.keephead.KeepHeadScorer` is a trained per-token keep head as in Provence.
Whole sentences are kept, in their original order.

Budget modes:

- ``threshold``: keep sentences scoring >= tau (the best one always, the title with ``keep_title``).
  The amount kept adapts to the passage, as in Provence.
- ``tokens`` / ``ratio``: take sentences greedily by score while they fit, skipping those that do not,
  and drop the weakest if joining makes the measured count exceed the target. With ``allow_partial``
  (default), the remaining gap is filled with a prefix of the best unselected sentence, cut at a
  token boundary, so the kept count lands within a token or two of the target; ``ratio`` is the removed
  fraction, ``target = max(1, round((1 - ratio) * original_tokens))`` and
  ``|removed_fraction - ratio| <= 0.02`` on texts over 200 tokens (tested). With ``allow_partial=False``
  only whole sentences are kept and the count is at most the target.

Counting: tokens of the scorer's tokenizer (MiniLM WordPiece by default) unless ``counter`` is given,
e.g. ``TokenCounter(generator_tokenizer)``. Kept sentences that are adjacent in the original are
one span (original whitespace kept); separate spans are joined with ``separator``, so
``text == separator.join(original[s:e] for s, e in kept_spans)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from prunekit.errors import ConfigError

from .base import Budget, ContextPruner, Pruned, Span, TokenCounter, merge_spans, unchanged
from .encoder import embed, load_minilm
from .units import Unit, split_units


@runtime_checkable
class SentenceScorer(Protocol):
    """Scores sentences against a query; higher means more useful."""

    def score(self, query: str, sentences: Sequence[str]) -> torch.Tensor: ...


class MiniLMScorer:
    """Cosine similarity of mean-pooled, normalised all-MiniLM-L6-v2 embeddings. Sentences are embedded in
    length-sorted batches of ``batch_size`` (8: less padding, ~25% faster than 32 on one CPU thread)."""

    def __init__(self, model: Any = None, tokenizer: Any = None, batch_size: int = 8, max_length: int = 256):
        if (model is None) != (tokenizer is None):
            raise ConfigError("MiniLMScorer needs both model and tokenizer, or neither (packaged MiniLM).")
        if model is None:
            model, tokenizer = load_minilm()
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, query: str, sentences: Sequence[str]) -> torch.Tensor:
        if not sentences:
            return torch.zeros(0)
        vectors = embed(self.model, self.tokenizer, [query, *sentences], self.batch_size, self.max_length)
        return vectors[1:] @ vectors[0]


@dataclass
class SentenceConfig:
    """Options of :class:`SentencePruner`."""

    keep_title: bool = False
    separator: str = " "
    allow_partial: bool = True
    passage_reduce: Literal["max", "mean"] = "max"  # passage score: max, or mean of the top_k sentences
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.passage_reduce not in ("max", "mean"):
            raise ConfigError(f"passage_reduce='{self.passage_reduce}' is invalid; valid choices: max, mean.")
        if self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k} is invalid; valid: an int >= 1.")


def select_threshold(scores: Sequence[float], tau: float, forced: Sequence[int] = ()) -> list[int]:
    """Indices scoring >= tau, plus ``forced``; the best index when nothing passes."""
    keep = {i for i, s in enumerate(scores) if s >= tau} | set(forced)
    if not keep and len(scores):
        keep = {max(range(len(scores)), key=lambda i: scores[i])}
    return sorted(keep)


def select_greedy(scores: Sequence[float], costs: Sequence[int], capacity: int,
                  forced: Sequence[int] = ()) -> list[int]:
    """Forced indices first, then the others by descending score while their cost fits."""
    keep = list(dict.fromkeys(forced))
    used = sum(costs[i] for i in keep)
    for i in sorted(range(len(scores)), key=lambda j: (-scores[j], j)):
        if i not in keep and used + costs[i] <= capacity:
            keep.append(i)
            used += costs[i]
    return sorted(keep)


def candidate_cuts(counter: Callable[[str], int], sentence: str) -> tuple[list[int], list[int]]:
    """Prefix end offsets of ``sentence``: (word ends, token ends); token ends fall back to word ends."""
    words = [m.end() for m in re.finditer(r"\S+", sentence)]
    ends = counter.token_ends(sentence) if isinstance(counter, TokenCounter) else None
    tokens = sorted({e for e in ends if 0 < e <= len(sentence)}) if ends else words
    return words, tokens


class SentencePruner(ContextPruner):
    """Keep the sentences of ``text`` most relevant to ``query`` (Provence-style)."""

    name = "sentences"
    needs_query = True
    supported_modes = ("tokens", "ratio", "threshold")

    def __init__(self, scorer: SentenceScorer | None = None, counter: Callable[[str], int] | None = None,
                 config: SentenceConfig | None = None):
        self.scorer = scorer if scorer is not None else MiniLMScorer()
        if not hasattr(self.scorer, "score"):
            raise ConfigError(f"scorer {type(self.scorer).__name__} has no score(query, sentences) method.")
        if counter is None:
            tokenizer = getattr(self.scorer, "tokenizer", None)
            if tokenizer is None:
                raise ConfigError("SentencePruner needs counter= when the scorer has no .tokenizer.")
            counter = TokenCounter(tokenizer)
        self.counter = counter
        self.config = config or SentenceConfig()

    # -- scoring ---------------------------------------------------------------------------------
    def score_units(self, query: str, text: str) -> tuple[list[Unit], list[float]]:
        """The units of ``text`` and their scores against ``query``."""
        units = split_units(text)
        if not units:
            return [], []
        scores = self.scorer.score(query, [text[u.start : u.end] for u in units])
        return units, [float(s) for s in torch.as_tensor(scores).flatten().tolist()]

    def passage_score(self, query: str, text: str) -> float:
        """Relevance of a whole passage: max, or mean of the top-k sentence scores (for reranking)."""
        _, scores = self.score_units(query, text)
        if not scores:
            return float("-inf")
        if self.config.passage_reduce == "max":
            return max(scores)
        top = sorted(scores, reverse=True)[: self.config.top_k]
        return sum(top) / len(top)

    def rerank(self, query: str, passages: Sequence[str]) -> list[int]:
        """Passage indices by descending :meth:`passage_score`."""
        values = [self.passage_score(query, p) for p in passages]
        return sorted(range(len(passages)), key=lambda i: (-values[i], i))

    # -- pruning ---------------------------------------------------------------------------------
    def _render(self, text: str, spans: Sequence[Span]) -> tuple[str, list[Span]]:
        merged = merge_spans(spans, text)
        return self.config.separator.join(text[s:e] for s, e in merged), merged

    def _result(self, text: str, spans: Sequence[Span], n_tokens: int) -> Pruned:
        out, merged = self._render(text, spans)
        kept = self.counter(out)
        return Pruned(out, merged, kept_fraction=kept / n_tokens, original_tokens=n_tokens, kept_tokens=kept)

    def _prune(self, query: str, text: str, budget: Budget, n_tokens: int) -> Pruned:
        units, scores = self.score_units(query, text)
        if not units:
            return unchanged(text, n_tokens)
        forced = [0] if self.config.keep_title and units[0].kind == "title" else []
        spans = [(u.start, u.end) for u in units]
        if budget.mode == "threshold":
            keep = select_threshold(scores, float(budget.threshold), forced)
            return self._result(text, [spans[i] for i in keep], n_tokens)
        target = budget.target(n_tokens)
        assert target is not None
        costs = [self.counter(text[s:e]) for s, e in spans]
        keep = select_greedy(scores, costs, target, forced)
        keep = self._shrink(text, spans, scores, keep, forced, target)
        chosen = [spans[i] for i in keep]
        if self.config.allow_partial:
            chosen = self._fill(text, spans, scores, keep, chosen, target)
        return self._result(text, chosen, n_tokens)

    def _count(self, text: str, spans: Sequence[Span]) -> int:
        return self.counter(self._render(text, spans)[0]) if spans else 0

    def _shrink(self, text: str, spans: list[Span], scores: list[float], keep: list[int],
                forced: list[int], target: int) -> list[int]:
        """Drop the weakest kept sentences while the joined text is over the target."""
        keep = list(keep)
        while keep and self._count(text, [spans[i] for i in keep]) > target:
            optional = [i for i in keep if i not in forced] or keep
            keep.remove(min(optional, key=lambda i: (scores[i], -i)))
        return keep

    def _fill(self, text: str, spans: list[Span], scores: list[float], keep: list[int],
              chosen: list[Span], target: int) -> list[Span]:
        """Add the longest token-boundary prefix of the best unselected sentence that still fits."""
        if self._count(text, chosen) >= target:
            return chosen
        others = sorted((i for i in range(len(spans)) if i not in keep), key=lambda i: (-scores[i], i))
        for i in others[:3]:
            start, end = spans[i]
            word_cuts, token_cuts = candidate_cuts(self.counter, text[start:end])
            # prefer a whole-word prefix when it lands within 2 tokens of the target
            for cuts, slack in ((word_cuts, 2), (token_cuts, 0)):
                best = self._longest_prefix(text, chosen, start, cuts, target)
                if best is not None and self._count(text, [*chosen, best]) >= target - slack:
                    return [*chosen, best]
            if best is not None:
                return [*chosen, best]
        return chosen

    def _longest_prefix(self, text: str, chosen: list[Span], start: int, cuts: list[int],
                        target: int) -> Span | None:
        """Binary search the longest ``(start, start + cut)`` whose joined count fits the target."""
        lo, hi, best = 0, len(cuts) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._count(text, [*chosen, (start, start + cuts[mid])]) <= target:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return None if best is None else (start, start + cuts[best])

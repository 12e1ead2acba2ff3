"""Text-level context pruners: Provence-style sentences, LongCodeZip for code, a self-information
token baseline, and DeepPrune for parallel reasoning traces.

All pruners share ``prune(query, text, budget) -> Pruned`` (see :mod:`prunekit.context.base` for the
budget semantics and bad-input behaviour). ``PRUNERS`` is the context-pruner registry (``prunekit list
context-pruners``): name -> class, imported on demand; tests/contracts/test_context_pruners.py walks it.
"""

from __future__ import annotations

from prunekit.registry import Registry

from .base import Budget, ContextPruner, Pruned, TokenCounter, token_counter
from .codechunks import Chunk, split_chunks
from .keephead import KeepHead, KeepHeadScorer, train_keep_head
from .knapsack import allocate_budget, find_spikes, knapsack, knapsack_exact, knapsack_greedy, split_blocks
from .longcodezip import LongCodeZipConfig, LongCodeZipPruner
from .sentences import MiniLMScorer, SentenceConfig, SentencePruner, SentenceScorer
from .simulate import simulate_traces, trace_generators
from .tokens import TokenPruner, TokenPrunerConfig
from .traces import DeepPruneResult, DeepPruneRunner, HeuristicJudge, Judge, extract_answer, ngram_jaccard
from .units import find_title, split_paragraphs, split_sentences, split_units

PRUNERS = Registry("context pruner")
PRUNERS.register("sentences", "prunekit.context.sentences:SentencePruner", kind="sentences",
                 summary="keep the sentences closest to the query by MiniLM (Provence, Chirkova et al. 2025)")
PRUNERS.register("code", "prunekit.context.longcodezip:LongCodeZipPruner", kind="lines",
                 summary="code: functions by query mutual information, lines by knapsack (Shi et al. 2025)")
PRUNERS.register("tokens", "prunekit.context.tokens:TokenPruner", kind="tokens",
                 summary="keep the tokens with the highest self-information under a causal LM (Li et al. 2023)")


def get_pruner(name: str) -> type[ContextPruner]:
    """The pruner class registered as ``name``; ConfigError (a ValueError) naming the valid choices otherwise."""
    return PRUNERS.load(name)


__all__ = [
    "PRUNERS", "Budget", "Chunk", "ContextPruner", "DeepPruneResult", "DeepPruneRunner", "HeuristicJudge",
    "Judge", "KeepHead", "KeepHeadScorer", "LongCodeZipConfig", "LongCodeZipPruner", "MiniLMScorer",
    "Pruned", "SentenceConfig", "SentencePruner", "SentenceScorer", "TokenCounter", "TokenPruner",
    "TokenPrunerConfig", "allocate_budget", "extract_answer", "find_spikes", "find_title", "get_pruner",
    "knapsack", "knapsack_exact", "knapsack_greedy", "ngram_jaccard", "simulate_traces", "split_blocks",
    "split_chunks", "split_paragraphs", "split_sentences", "split_units", "token_counter",
    "train_keep_head", "trace_generators",
]

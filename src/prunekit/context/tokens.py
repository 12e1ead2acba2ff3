"""Token-level baseline: drop the least informative tokens (Li et al. 2023, "Compressing Context to
Enhance Inference Efficiency of Large Language Models" / Selective Context; Jiang et al. 2023,
"LLMLingua: Compressing Prompts for Accelerated Inference of Large Language Models").

Each token's self-information ``-log p(token | prefix)`` (nats) comes from the injected causal LM, with
sliding windows of ``window`` tokens (stride ``window // 2``) for long texts; the first token is
scored after the tokenizer's BOS (else CLS / EOS) or always kept when there is none.

- ``tokens`` / ``ratio`` (``ratio`` is the removed fraction): tokens are taken by descending
  self-information (ties by position) until ``target = max(1, round((1 - ratio) * n))`` (or ``tokens``)
  are kept, so ``kept_tokens == target`` **exactly**, counted in the LM tokenizer (the only counting
  tokenizer of this pruner; ``add_special_tokens=False``).
- ``threshold``: keep tokens whose self-information is >= the threshold (at least one token).

Word prefixes (``word_prefix=True``, default; our addition, not in the papers): a token that continues a
word (it starts with a letter or digit right after a letter or digit, or right after a whitespace-only
token, as in digit-splitting tokenizers) is kept only together with the tokens before it in that word.
Taking a token also takes its missing prefix and is skipped when that would pass the target; in threshold
mode the prefixes of the passing tokens are added. Without it, kept word pieces such as "Ma" + "richt"
or the digits of "1957" without their space token re-encode into more tokens: on SQuAD paragraphs with
SmolLM2-135M the re-encoded output overshot the kept fraction by up to 0.053 (11% of cases over 0.02); with it,
by at most 0.007 (bench/context/rate.py). ``word_prefix=False`` keeps the plain top-k tokens.

Query-agnostic (as Selective Context): the query may be empty and is ignored.

Detokenisation keeps the original characters: every kept token becomes its character span, widened to
the whitespace right before it; touching spans merge. Separate spans are concatenated, with one space
added only where two word characters would otherwise fuse (see :func:`join_pieces`). Re-encoding the
output can still differ from ``kept_tokens`` by a few tokens where separate pieces meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prunekit.errors import ConfigError

from .base import Budget, ContextPruner, Pruned, Span, TokenCounter, _default_lm, merge_spans
from .lm import self_information, token_logprobs


@dataclass
class TokenPrunerConfig:
    """Options of :class:`TokenPruner`."""

    window: int = 512
    stride: int | None = None
    batch_size: int = 4
    word_prefix: bool = True  # a kept word piece brings the pieces before it in its word (see module doc)

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ConfigError(f"window={self.window} is invalid; valid: an int >= 2.")
        if self.stride is not None and not 1 <= self.stride < self.window:
            raise ConfigError(f"stride={self.stride} is invalid; valid: 1 <= stride < window.")


def keep_top(info: torch.Tensor, k: int) -> list[int]:
    """Positions of the ``k`` largest values (ties: earlier first), in position order."""
    order = sorted(range(len(info)), key=lambda i: (-float(info[i]), i))
    return sorted(order[:k])


def continues_word(text: str, offsets: Sequence[tuple[int, int]], i: int) -> bool:
    """Token ``i`` continues the word of token ``i - 1``: it starts with a letter or digit directly after
    a letter or digit, or directly after a whitespace-only token (digit-splitting tokenizers)."""
    if i <= 0:
        return False
    prev_start, prev_end = offsets[i - 1]
    start, end = offsets[i]
    prev, cur = text[prev_start:prev_end], text[start:end]
    if not prev or not cur or prev_end != start or not cur[0].isalnum():
        return False
    return prev[-1].isalnum() or prev.isspace()


def keep_top_words(info: torch.Tensor, k: int, text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Exactly ``min(k, n)`` positions: by descending value (ties: earlier first), each taken with the
    not yet kept tokens before it in its word, skipped when those would not fit."""
    n = len(info)
    word_start = list(range(n))
    for i in range(1, n):
        if continues_word(text, offsets, i):
            word_start[i] = word_start[i - 1]
    kept = [False] * n
    count = 0
    for i in sorted(range(n), key=lambda j: (-float(info[j]), j)):
        if count >= k:
            break
        if kept[i]:
            continue
        missing = [j for j in range(word_start[i], i + 1) if not kept[j]]
        if count + len(missing) <= k:
            for j in missing:
                kept[j] = True
            count += len(missing)
    return [i for i in range(n) if kept[i]]


def with_word_prefixes(keep: Sequence[int], text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """``keep`` plus the tokens before each kept token in its word."""
    out = set(keep)
    for i in keep:
        while continues_word(text, offsets, i):
            i -= 1
            out.add(i)
    return sorted(out)


def _fuses(left: str, right: str) -> bool:
    return bool(left) and bool(right) and left[-1].isalnum() and right[0].isalnum()


def join_pieces(text: str, spans: Sequence[Span]) -> str:
    """Concatenate ``text[s:e]`` for each span, adding one space where two word characters would fuse."""
    out: list[str] = []
    for start, end in spans:
        piece = text[start:end]
        if out and _fuses(out[-1], piece):
            out.append(" ")
        out.append(piece)
    return "".join(out)


def token_spans(text: str, offsets: Sequence[tuple[int, int]], keep: Sequence[int]) -> list[Span]:
    """Character spans of the kept tokens, each widened over the whitespace before it, merged."""
    spans = []
    for i in keep:
        start, end = offsets[i]
        prev_end = offsets[i - 1][1] if i > 0 else 0
        if prev_end <= start and not text[prev_end:start].strip():
            start = prev_end
        spans.append((start, end))
    merged = merge_spans(spans, text, bridge_whitespace=False)
    if merged:  # no leading whitespace at the very start
        first_start, first_end = merged[0]
        while first_start < first_end and text[first_start].isspace():
            first_start += 1
        merged[0] = (first_start, first_end)
    return [span for span in merged if span[1] > span[0]]


class TokenPruner(ContextPruner):
    """Keep the tokens with the highest self-information under the injected causal LM."""

    name = "tokens"
    needs_query = False
    supported_modes = ("tokens", "ratio", "threshold")

    def __init__(self, model: Any = None, tokenizer: Any = None, config: TokenPrunerConfig | None = None):
        if model is None:
            model, tokenizer = _default_lm()
        if tokenizer is None:
            raise ConfigError("TokenPruner got a model without its tokenizer; pass both or neither.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.counter = TokenCounter(tokenizer)
        self.config = config or TokenPrunerConfig()

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        except (NotImplementedError, ValueError) as err:
            raise ConfigError("TokenPruner needs a tokenizer that returns offsets (a fast tokenizer).") from err
        return list(enc.input_ids), [(int(s), int(e)) for s, e in enc["offset_mapping"]]

    def self_information(self, text: str) -> tuple[list[int], list[tuple[int, int]], torch.Tensor]:
        """Token ids, character offsets and self-information (nats; +inf when unscorable)."""
        ids, offsets = self._encode(text)
        cfg = self.config
        logp = token_logprobs(self.model, self.tokenizer, ids, cfg.window, cfg.stride, cfg.batch_size)
        return ids, offsets, self_information(logp)

    def _prune(self, query: str, text: str, budget: Budget, n_tokens: int) -> Pruned:
        ids, offsets, info = self.self_information(text)
        n = len(ids)
        words = self.config.word_prefix
        if budget.mode == "threshold":
            keep = [i for i in range(n) if float(info[i]) >= float(budget.threshold)] or keep_top(info, 1)
            if words:
                keep = with_word_prefixes(keep, text, offsets)
        else:
            target = budget.target(n)
            assert target is not None
            keep = keep_top_words(info, target, text, offsets) if words else keep_top(info, target)
        spans = token_spans(text, offsets, keep)
        return Pruned(join_pieces(text, spans), spans, kept_fraction=len(keep) / n, original_tokens=n,
                      kept_tokens=len(keep))

"""Token-level baseline: drop the least informative tokens (Li et al. 2023, "Compressing Context to
Enhance Inference Efficiency of Large Language Models" / Selective Context; Jiang et al. 2023,
"LLMLingua: Compressing Prompts for Accelerated Inference of Large Language Models").

Each token's self-information ``-log p(token | prefix)`` (nats) comes from the injected causal LM, with
sliding windows of ``window`` tokens (stride ``window // 2``) for long texts; the first token is
scored after the tokenizer's BOS (else CLS / EOS) or always kept when there is none.

- ``tokens`` / ``rate``: the ``target = round(rate * n)`` (or ``tokens``) most informative tokens are
  kept, ties broken by position, so ``kept_tokens == target`` **exactly**, counted in the LM tokenizer
  (the only counting tokenizer of this pruner; ``add_special_tokens=False``).
- ``threshold``: keep tokens whose self-information is >= the threshold (at least one token).

Query-agnostic (as Selective Context): the query may be empty and is ignored.

Detokenisation keeps the original characters: every kept token becomes its character span, widened to
the whitespace right before it; touching spans merge. Separate spans are concatenated, with one space
added only where two word characters would otherwise fuse (see :func:`join_pieces`). Re-encoding the
output can differ from ``kept_tokens`` by a few tokens where pieces of split words meet.
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

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ConfigError(f"window={self.window} is invalid; valid: an int >= 2.")
        if self.stride is not None and not 1 <= self.stride < self.window:
            raise ConfigError(f"stride={self.stride} is invalid; valid: 1 <= stride < window.")


def keep_top(info: torch.Tensor, k: int) -> list[int]:
    """Positions of the ``k`` largest values (ties: earlier first), in position order."""
    order = sorted(range(len(info)), key=lambda i: (-float(info[i]), i))
    return sorted(order[:k])


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
    supported_modes = ("tokens", "rate", "threshold")

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
        if budget.mode == "threshold":
            keep = [i for i in range(n) if float(info[i]) >= float(budget.threshold)] or keep_top(info, 1)
        else:
            target = budget.target(n)
            assert target is not None
            keep = keep_top(info, target)
        spans = token_spans(text, offsets, keep)
        return Pruned(join_pieces(text, spans), spans, len(keep) / n, n, len(keep))

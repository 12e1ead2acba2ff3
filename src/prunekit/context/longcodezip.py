"""LongCodeZip: two-stage code compression (Shi et al. 2025, "LongCodeZip: Compress Long Context for
Code Language Models", ASE 2025, arXiv 2510.00446). Training-free; needs any causal LM.

1. **Coarse.** Split the code into function-level chunks (:mod:`prunekit.context.codechunks`). Rank
   them by approximate mutual information with the query, ``AMI(c) = PPL(q) - PPL(q | c)``, the
   perplexity of the query tokens with and without ``c + "\\n\\n"`` in front (batched; a chunk longer
   than ``max_length`` tokens keeps its head, the signature and docstring that name it). Take chunks
   by descending AMI until ``target / fine_ratio + coarse_extra`` tokens (the paper's budget: target
   + 100 tokens) are used, the chunk crossing that line included.
2. **Fine.** Inside each kept chunk of >= ``min_lines`` lines, each line gets its log-perplexity
   (mean token NLL given the previous lines of the chunk) and a line starts a new block when it
   exceeds ``mean + spike_k * std`` of its neighbours within ``spike_window`` lines
   (:func:`~prunekit.context.knapsack.find_spikes`); blocks are capped at ``max_block_lines``. The
   target is split over kept chunks in proportion to size, tilted by their normalised AMI
   (:func:`~prunekit.context.knapsack.allocate_budget`, the paper's adaptive budget, ``beta``). A chunk's
   first line (its signature) is always kept; the other blocks are chosen by 0/1 knapsack (value = block
   AMI shifted to be positive, so the budget is used; weight = tokens): exact DP when
   ``blocks * (capacity + 1) <= max_cells``, greedy by value/weight otherwise. Chunks are visited by
   descending AMI and the share one leaves unused (blocks are indivisible) is added to the next one's.
   Shorter chunks are kept whole (or dropped when their share is under half their size).
3. **Rendering and exact budget.** Each run of dropped lines becomes one marker line in the language's
   comment style with the indentation of the first dropped line, e.g. ``    # ... (12 lines omitted)``
   (runs of blank lines vanish without a marker). The joined text, markers included, is re-counted, and
   blocks are dropped (least relevant chunk, then lowest value density first) or added (the reverse),
   then single lines added, until ``target - tolerance * original <= kept <= target`` or no move helps;
   ``ratio`` is the removed fraction: ``target = max(1, round((1 - ratio) * original))``. When not even
   one marker fits the budget the result is empty text.

Counting: the LM's tokenizer (``TokenCounter``) unless ``counter`` is given. ``kept_spans`` are line
runs of the original; the output is those runs with marker lines between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunekit.errors import ConfigError

from .base import Budget, ContextPruner, Pruned, Span, TokenCounter, _default_lm
from .codechunks import Chunk, check_language, omission_marker, split_chunks
from .knapsack import allocate_budget, knapsack, knapsack_exact, knapsack_greedy, split_blocks
from .lm import approx_mutual_information, encode, token_logprobs

__all__ = ["LongCodeZipConfig", "LongCodeZipPruner", "knapsack_exact", "knapsack_greedy"]


@dataclass
class LongCodeZipConfig:
    """Options of :class:`LongCodeZipPruner` (defaults follow the paper where it gives one)."""

    language: str = "python"
    fine_ratio: float = 1.0  # coarse budget = target / fine_ratio + coarse_extra tokens
    coarse_extra: int = 100  # the paper's ``context_budget="+100"``
    beta: float = 0.5  # adaptive-budget tilt
    spike_k: float = 1.0
    spike_window: int = 3
    min_lines: int = 5
    max_block_lines: int = 12
    max_length: int = 512
    truncate: str = "head"  # a chunk longer than max_length keeps its first tokens ("tail": its last)
    batch_size: int = 8
    max_cells: int = 200_000
    tolerance: float = 0.01  # accepted shortfall below the target, as a fraction of the original

    def __post_init__(self) -> None:
        check_language(self.language)
        if self.coarse_extra < 0:
            raise ConfigError(f"coarse_extra={self.coarse_extra} is invalid; valid: an int >= 0.")
        if not 0 < self.fine_ratio <= 1:
            raise ConfigError(f"fine_ratio={self.fine_ratio} is invalid; valid: a float in (0, 1].")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance={self.tolerance} is invalid; valid: a float in [0, 1).")
        if self.truncate not in ("head", "tail"):
            raise ConfigError(f"truncate={self.truncate!r} is invalid; valid: 'head' or 'tail'.")
        if self.min_lines < 1 or self.max_block_lines < 1 or self.max_length < 8:
            raise ConfigError("min_lines and max_block_lines must be >= 1 and max_length >= 8.")


@dataclass
class _Block:
    chunk: int
    start: int  # line range [start, end)
    end: int
    weight: int
    value: float
    kept: bool = False
    chunk_value: float = 0.0  # AMI of the whole chunk: blocks of more relevant chunks go first

    def priority(self) -> tuple[float, float, int]:
        return (self.chunk_value, self.value / max(self.weight, 1), -self.start)


class LongCodeZipPruner(ContextPruner):
    """Coarse-to-fine code compression with a causal LM (LongCodeZip)."""

    name = "code"
    needs_query = True
    supported_modes = ("tokens", "ratio")

    def __init__(self, model: Any = None, tokenizer: Any = None, counter: Callable[[str], int] | None = None,
                 config: LongCodeZipConfig | None = None):
        if model is None:
            model, tokenizer = _default_lm()
        if tokenizer is None:
            raise ConfigError("LongCodeZipPruner got a model without its tokenizer; pass both or neither.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.counter = counter or TokenCounter(tokenizer)
        self.config = config or LongCodeZipConfig()

    # -- LM scores -------------------------------------------------------------------------------
    def ami(self, query: str, contexts: list[str]) -> list[float]:
        """Approximate mutual information of each context with the query."""
        cfg = self.config
        values = approx_mutual_information(self.model, self.tokenizer, contexts, query, cfg.max_length,
                                           cfg.batch_size, keep=cfg.truncate)
        return [float(v) for v in values]

    def line_scores(self, lines: list[str]) -> list[float]:
        """Log-perplexity of each line given the previous lines (NaN for lines without tokens)."""
        ids, owner = [], []
        for i, line in enumerate(lines):
            line_ids = encode(self.tokenizer, line)
            ids += line_ids
            owner += [i] * len(line_ids)
        logp = token_logprobs(self.model, self.tokenizer, ids, window=self.config.max_length,
                              batch_size=self.config.batch_size)
        sums, counts = [0.0] * len(lines), [0] * len(lines)
        for value, i in zip(logp.tolist(), owner, strict=True):
            if value == value:  # not NaN
                sums[i] -= value
                counts[i] += 1
        return [s / c if c else float("nan") for s, c in zip(sums, counts, strict=True)]

    # -- stages ----------------------------------------------------------------------------------
    def _coarse(self, chunk_tokens: list[int], chunk_ami: list[float], capacity: float) -> list[int]:
        """Chunks by descending AMI until ``capacity`` is used up; the chunk that crosses it is taken too
        (the fine stage trims it), so a relevant chunk is never skipped for its size."""
        order = sorted(range(len(chunk_tokens)), key=lambda i: (-chunk_ami[i], i))
        chosen, used = [], 0
        for i in order:
            if used >= capacity:
                break
            chosen.append(i)
            used += chunk_tokens[i]
        return sorted(chosen)

    def _fine_blocks(self, query: str, lines: list[str], chunks: list[Chunk], selected: list[int],
                     chunk_ami: list[float], line_tokens: list[int]) -> list[_Block]:
        """All blocks: selected long chunks split at perplexity spikes, every other chunk whole."""
        cfg = self.config
        blocks: list[_Block] = []
        inner: list[_Block] = []  # blocks that still need their own AMI
        for c, chunk in enumerate(chunks):
            n_code = sum(1 for line in lines[chunk.start : chunk.end] if line.strip())
            weight = sum(line_tokens[chunk.start : chunk.end])
            if c not in selected or n_code < cfg.min_lines:
                blocks.append(_Block(c, chunk.start, chunk.end, weight, chunk_ami[c]))
                continue
            head = chunk.start + 1
            while head < chunk.end and not lines[head - 1].strip():  # header = first non-blank line
                head += 1
            blocks.append(_Block(c, chunk.start, head, sum(line_tokens[chunk.start : head]), float("inf")))
            scores = self.line_scores(lines[chunk.start : chunk.end])[head - chunk.start :]
            for a, b in split_blocks(scores, cfg.spike_k, cfg.spike_window, cfg.max_block_lines):
                start, end = head + a, head + b
                inner.append(_Block(c, start, end, sum(line_tokens[start:end]), 0.0))
                blocks.append(inner[-1])
        if inner:
            values = self.ami(query, ["".join(lines[b.start : b.end]) for b in inner])
            for block, value in zip(inner, values, strict=True):
                block.value = value
        for block in blocks:
            block.chunk_value = chunk_ami[block.chunk]
        return blocks

    def _select(self, blocks: list[_Block], selected: list[int], chunk_ami: list[float], target: int) -> None:
        """Adaptive per-chunk budgets, then a knapsack over each chunk's blocks."""
        by_chunk = {c: [b for b in blocks if b.chunk == c] for c in selected}
        sizes = [sum(b.weight for b in by_chunk[c]) for c in selected]
        shares = dict(zip(selected, allocate_budget(sizes, [chunk_ami[c] for c in selected], target,
                                                    self.config.beta), strict=True))
        carry = 0  # share a chunk could not use (block granularity) passes to the next most relevant one
        for c in sorted(selected, key=lambda c: (-chunk_ami[c], c)):
            group, share = by_chunk[c], shares[c] + carry
            if len(group) == 1:
                group[0].kept = group[0].weight <= share or share >= 0.5 * group[0].weight
                carry = share - group[0].weight if group[0].kept else share
                continue
            head, rest = group[0], group[1:]
            head.kept = True
            low = min(b.value for b in rest)
            values = [b.value - low + 1e-3 for b in rest]
            picked = knapsack(values, [b.weight for b in rest], max(0, share - head.weight), self.config.max_cells)
            for i in picked:
                rest[i].kept = True
            carry = share - head.weight - sum(rest[i].weight for i in picked)

    # -- rendering -------------------------------------------------------------------------------
    def render(self, lines: list[str], keep: list[bool]) -> tuple[str, list[Span]]:
        """Kept line runs with one omission marker per dropped run; spans are character offsets."""
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        out, spans, i = [], [], 0
        while i < len(lines):
            j = i
            while j < len(lines) and keep[j] == keep[i]:
                j += 1
            if keep[i]:
                out.append("".join(lines[i:j]))
                spans.append((starts[i], starts[j]))
            elif "".join(lines[i:j]).strip():
                first = next(line for line in lines[i:j] if line.strip())
                indent = first[: len(first) - len(first.lstrip())]
                out.append(omission_marker(j - i, indent, self.config.language))
            i = j
        return "".join(out), spans

    def _keep_mask(self, n_lines: int, blocks: list[_Block]) -> list[bool]:
        keep = [False] * n_lines
        for b in blocks:
            if b.kept:
                keep[b.start : b.end] = [True] * (b.end - b.start)
        return keep

    def _fit(self, lines: list[str], blocks: list[_Block], target: int, slack: int) -> list[bool]:
        """Drop / add blocks, then add single lines, until the rendered count is in
        ``[target - slack, target]`` or no move helps. Returns the line keep mask."""
        def count() -> int:
            return self.counter(self.render(lines, self._keep_mask(len(lines), blocks))[0])

        removed: set[int] = set()
        current = count()
        for _ in range(4 * len(blocks) + 4):
            if current > target:
                kept = [i for i, b in enumerate(blocks) if b.kept and b.weight > 0]
                if not kept:
                    break
                victim = min(kept, key=lambda i: blocks[i].priority())
                blocks[victim].kept = False
                removed.add(victim)
            elif current < target - slack:
                options = [i for i, b in enumerate(blocks)
                           if not b.kept and i not in removed and 0 < b.weight <= target - current]
                if not options:
                    break
                pick = max(options, key=lambda i: blocks[i].priority())
                blocks[pick].kept = True
                if count() > target:  # markers made it overshoot: undo and never retry
                    blocks[pick].kept = False
                    removed.add(pick)
                    continue
            else:
                break
            current = count()
        keep = self._keep_mask(len(lines), blocks)
        if current < target - slack:
            self._fill_lines(lines, keep, blocks, current, target, slack)
        return keep

    def _fill_lines(self, lines: list[str], keep: list[bool], blocks: list[_Block], current: int,
                    target: int, slack: int, max_tries: int = 200) -> None:
        """Add single dropped lines (next to kept ones first, then by block priority) while they fit."""
        rank = {}
        for block in blocks:
            for i in range(block.start, block.end):
                rank[i] = block.priority()
        tried: set[int] = set()
        for _ in range(max_tries):
            options = [i for i in range(len(lines)) if not keep[i] and i not in tried and lines[i].strip()]
            if not options or current >= target - slack:
                return

            def key(i: int) -> tuple:
                touching = (i > 0 and keep[i - 1]) or (i + 1 < len(lines) and keep[i + 1])
                return (touching, rank.get(i, (0.0, 0.0, 0)))

            pick = max(options, key=key)
            tried.add(pick)
            keep[pick] = True
            new = self.counter(self.render(lines, keep)[0])
            if new <= target:
                current = new
            else:
                keep[pick] = False

    def _prune(self, query: str, text: str, budget: Budget, n_tokens: int) -> Pruned:
        cfg = self.config
        target = budget.target(n_tokens)
        assert target is not None
        lines = text.splitlines(keepends=True)
        chunks = split_chunks(text, cfg.language)
        line_tokens = [self.counter(line) for line in lines]
        chunk_texts = ["".join(lines[c.start : c.end]) for c in chunks]
        chunk_ami = self.ami(query, chunk_texts)
        chunk_tokens = [sum(line_tokens[c.start : c.end]) for c in chunks]
        selected = self._coarse(chunk_tokens, chunk_ami, target / cfg.fine_ratio + cfg.coarse_extra)
        blocks = self._fine_blocks(query, lines, chunks, selected, chunk_ami, line_tokens)
        self._select(blocks, selected, chunk_ami, target)
        keep = self._fit(lines, blocks, target, max(1, int(cfg.tolerance * n_tokens)))
        out, spans = self.render(lines, keep)
        kept = self.counter(out)
        if kept > target and not spans:  # even a lone marker is over budget
            return Pruned("", [], kept_fraction=0.0, original_tokens=n_tokens, kept_tokens=0)
        return Pruned(out, spans, kept_fraction=kept / n_tokens, original_tokens=n_tokens, kept_tokens=kept)

"""Shared protocol of the text-level context pruners: budgets, results and input checks.

Every pruner implements ``prune(query, text, budget) -> Pruned``. Shared behaviour:

- **Budget.** Exactly one of ``tokens`` (keep at most this many tokens), ``ratio`` (the fraction of the
  tokens REMOVED, in [0, 1), as ``ratio`` everywhere in prunekit; the target is
  ``max(1, round((1 - ratio) * original_tokens))``) or ``threshold`` (adaptive pruners keep every unit
  scoring at least the threshold). Pruners refuse modes they do not support. The old ``rate`` (the KEPT
  fraction, LLMLingua's convention) still works with a :class:`~prunekit.core.typed.RenamedOptionWarning`:
  ``Budget(rate=r)`` is ``Budget(ratio=1 - r)`` and keeps exactly the ``round(r * original_tokens)`` tokens
  it kept before.
- **Counting.** Tokens are counted by a :class:`TokenCounter` built from an HF tokenizer
  (``len(tok(text, add_special_tokens=False).input_ids)``); each pruner documents which tokenizer.
  ``Pruned.kept_fraction = kept_tokens / original_tokens`` and ``Pruned.removed_fraction`` is
  ``1 - kept_fraction`` (``Pruned.ratio``, the kept fraction, is the deprecated old name).
- **Bad input.** An empty (or blank) query raises ``ValueError`` for query-dependent pruners. Empty
  text returns an empty :class:`Pruned` with kept fraction 1.0. A budget at or above the text's token
  count returns the text unchanged with kept fraction 1.0. ``bytes`` are decoded as UTF-8; undecodable
  bytes raise ``ValueError`` ("text is not valid UTF-8 ... pass str or decode it first"). Other types
  raise ``ValueError`` naming the type and the accepted ones.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from prunekit.core.typed import RenamedOptionWarning
from prunekit.errors import ConfigError

BudgetMode = Literal["tokens", "ratio", "threshold"]
Span = tuple[int, int]


@dataclass
class Pruned:
    """Result of pruning: the kept text and where it came from in the original."""

    text: str
    kept_spans: list[Span] = field(default_factory=list)  # character offsets into the original text
    kept_fraction: float = 1.0  # kept tokens / original tokens
    original_tokens: int = 0
    kept_tokens: int = 0

    @property
    def removed_fraction(self) -> float:
        """Removed tokens / original tokens, ``1 - kept_fraction`` (the meaning of ``ratio`` in prunekit)."""
        return 1.0 - self.kept_fraction

    @property
    def ratio(self) -> float:
        """Deprecated: the KEPT fraction; use :attr:`kept_fraction` (or :attr:`removed_fraction`)."""
        warnings.warn("Pruned.ratio (kept fraction) is renamed kept_fraction; it will mean the removed fraction "
                      "like everywhere else in prunekit", RenamedOptionWarning, stacklevel=2)
        return self.kept_fraction


def _complement(fraction: float) -> float:
    """``1 - fraction`` computed on the decimal the user wrote (``1 - 0.7`` is 0.3, not 0.30000000000000004),
    so that ``ratio=0.7`` keeps exactly what ``rate=0.3`` kept, rounding ties included."""
    return float(1 - Decimal(str(float(fraction))))


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


@dataclass(frozen=True)
class Budget:
    """How much to keep: exactly one of ``tokens``, ``ratio`` (fraction REMOVED) or ``threshold``.

    ``rate`` (the kept fraction) is the deprecated old form: ``Budget(rate=r)`` is ``Budget(ratio=1 - r)``
    with the same target as before and warns :class:`~prunekit.core.typed.RenamedOptionWarning`.
    """

    tokens: int | None = None
    ratio: float | None = None
    threshold: float | None = None
    rate: InitVar[float | None] = None
    _keep: float | None = field(default=None, init=False, repr=False)  # kept fraction in ratio mode

    def __post_init__(self, rate: float | None) -> None:
        if rate is not None:
            self._take_rate(rate)
        given = [name for name in ("tokens", "ratio", "threshold") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"Budget needs exactly one of tokens, ratio or threshold, got {given or 'none'}. "
                "Valid choices: Budget(tokens=N), Budget(ratio=0.5) (remove half the tokens), "
                "Budget(threshold=0.3)."
            )
        if self.tokens is not None:
            if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
                raise ConfigError(f"Budget tokens={self.tokens!r} is invalid; valid: an int >= 1.")
        if self.ratio is not None and self._keep is None:
            if not _is_number(self.ratio) or not 0.0 <= self.ratio < 1.0:
                raise ConfigError(f"Budget ratio={self.ratio!r} is invalid; valid: the fraction of the tokens "
                                  "removed, a float in [0, 1).")
            object.__setattr__(self, "_keep", _complement(self.ratio))
        if self.threshold is not None:
            thr = self.threshold
            if not _is_number(thr) or not math.isfinite(thr):
                raise ConfigError(f"Budget threshold={thr!r} is invalid; valid: a finite float.")

    @classmethod
    def keeping(cls, fraction: float) -> Budget:
        """The ratio budget that keeps `fraction` of the tokens (target ``round(fraction * n)``, exactly as
        ``rate=fraction`` did), without the deprecation warning."""
        if not _is_number(fraction) or not 0.0 < fraction <= 1.0:
            raise ConfigError(f"Budget.keeping({fraction!r}) is invalid; valid: the kept fraction, in (0, 1].")
        budget = cls(ratio=_complement(fraction))
        object.__setattr__(budget, "_keep", fraction)
        return budget

    def _take_rate(self, rate: float) -> None:
        """Accept the old ``rate`` (kept fraction): store ``ratio = 1 - rate`` and keep ``rate`` for the target."""
        if self.ratio is not None:
            raise ConfigError(
                f"Budget got both rate={rate!r} and ratio={self.ratio!r}; rate (kept fraction) is the old name "
                "of ratio (removed fraction) = 1 - rate. Give only ratio."
            )
        if not _is_number(rate) or not 0.0 < rate <= 1.0:
            raise ConfigError(f"Budget rate={rate!r} is invalid; valid: a float in (0, 1] (the kept fraction; "
                              "better: ratio, the removed fraction, in [0, 1)).")
        warnings.warn(f"Budget rate (kept fraction) is replaced by ratio (removed fraction) = 1 - rate: "
                      f"rate={rate!r} is ratio={_complement(rate)!r}; rate still works for now",
                      RenamedOptionWarning, stacklevel=4)
        object.__setattr__(self, "ratio", _complement(rate))
        object.__setattr__(self, "_keep", rate)

    @property
    def mode(self) -> BudgetMode:
        if self.tokens is not None:
            return "tokens"
        return "ratio" if self.ratio is not None else "threshold"

    def target(self, total: int) -> int | None:
        """Token target for a text of ``total`` tokens (None in threshold mode), capped at ``total``:
        ``tokens``, or ``max(1, round((1 - ratio) * total))`` in ratio mode."""
        if self.tokens is not None:
            return min(self.tokens, total)
        if self._keep is not None:
            return min(total, max(1, round(self._keep * total)))
        return None


class TokenCounter:
    """Callable ``str -> int`` counting tokens of an HF tokenizer without special tokens."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    def token_ends(self, text: str) -> list[int] | None:
        """End character offset of every token, or None if the tokenizer gives no offsets."""
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        except (NotImplementedError, ValueError, TypeError):
            return None
        offsets = enc.get("offset_mapping")
        return [int(e) for _, e in offsets] if offsets is not None else None


def token_counter(tokenizer: Any) -> TokenCounter:
    """Build a :class:`TokenCounter` from any HF tokenizer."""
    return TokenCounter(tokenizer)


def as_text(value: object, name: str) -> str:
    """Return ``value`` as str, decoding UTF-8 bytes; raise ValueError for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{name} is not valid UTF-8 (byte 0x{value[err.start]:02x} at position {err.start}); "
                "pass str or decode it first."
            ) from None
    raise ConfigError(f"{name} has type {type(value).__name__}; valid choices: str or UTF-8 bytes.")


def check_modes(budget: Budget, supported: Sequence[str], who: str) -> None:
    if not isinstance(budget, Budget):
        raise ConfigError(f"budget has type {type(budget).__name__}; valid choices: prunekit Budget.")
    if budget.mode not in supported:
        raise ConfigError(
            f"{who} does not support budget mode '{budget.mode}'. Valid choices: {', '.join(supported)}."
        )


def merge_spans(spans: Sequence[Span], text: str, bridge_whitespace: bool = True) -> list[Span]:
    """Sort spans and merge those that touch (or, optionally, are separated by whitespace only)."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged:
            prev_start, prev_end = merged[-1]
            gap = text[prev_end:start]
            if start <= prev_end or (bridge_whitespace and not gap.strip()):
                merged[-1] = (prev_start, max(prev_end, end))
                continue
        merged.append((start, end))
    return merged


def unchanged(text: str, n_tokens: int) -> Pruned:
    spans = [(0, len(text))] if text else []
    return Pruned(text, spans, kept_fraction=1.0, original_tokens=n_tokens, kept_tokens=n_tokens)


class ContextPruner(ABC):
    """Template: ``prune`` validates input and handles trivial cases, subclasses write ``_prune``."""

    name: str = "pruner"
    needs_query: bool = True
    supported_modes: tuple[str, ...] = ("tokens", "ratio", "threshold")
    counter: Callable[[str], int]

    def prune(self, query: str | bytes, text: str | bytes, budget: Budget) -> Pruned:
        """Keep the part of ``text`` most useful for ``query`` within ``budget``."""
        query = as_text(query, "query")
        text = as_text(text, "text")
        check_modes(budget, self.supported_modes, type(self).__name__)
        if self.needs_query and not query.strip():
            raise ConfigError(
                f"query is empty; {type(self).__name__} scores the text against the query, "
                "so pass a non-empty question."
            )
        if not text:
            return Pruned("", [], kept_fraction=1.0, original_tokens=0, kept_tokens=0)
        n_tokens = self.counter(text)
        if n_tokens == 0:
            return unchanged(text, 0)
        target = budget.target(n_tokens)
        if target is not None and target >= n_tokens:
            return unchanged(text, n_tokens)
        return self._prune(query, text, budget, n_tokens)

    @abstractmethod
    def _prune(self, query: str, text: str, budget: Budget, n_tokens: int) -> Pruned:
        """Prune non-empty ``text`` of ``n_tokens`` tokens that does not already fit the budget."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default_lm() -> tuple[Any, Any]:
    """The project's default causal LM (SmolLM2-135M) as ``(model, tokenizer)``; imported lazily."""
    from prunekit import models  # heavy and optional: only when no LM is injected

    loaded = models.load("smollm2-135m")
    return loaded.model, loaded.tokenizer

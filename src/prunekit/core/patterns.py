"""Sparsity patterns and keep masks.

Masks are boolean tensors where ``True`` means *keep*. Weights follow the PyTorch
``nn.Linear`` layout ``(out, in)``; N:M groups run along the input dimension (the last
dim), as in the 2:4 pattern of NVIDIA sparse tensor cores (Mishra et al. 2021,
"Accelerating Sparse Deep Neural Networks").

Counting rule used everywhere in prunekit: pruning a fraction ``sparsity`` of ``n``
weights removes exactly ``round(sparsity * n)`` of them (Python ``round``, i.e. ties to
even), see :func:`num_pruned`. Ties between equal scores are broken by position: the
earlier (lower flat index) weight is kept.
"""

import re
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

_NM_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class NM:
    """Keep ``n`` non-zeros in every group of ``m`` consecutive weights along dim -1."""

    n: int
    m: int

    def __post_init__(self) -> None:
        for name, value in (("N", self.n), ("M", self.m)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"N:M pattern needs integers N >= 1 and M >= 1, got {name}={value!r}")
        if self.n > self.m:
            raise ValueError(f"N:M pattern needs N <= M, got N={self.n}, M={self.m}")

    @classmethod
    def parse(cls, text: str) -> "NM":
        """Parse ``"2:4"`` (as written in recipes and on the command line)."""
        match = _NM_RE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"N:M pattern must look like '2:4' (two positive integers), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def sparsity(self) -> float:
        """Fraction of weights the pattern removes, ``1 - n/m``."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Return ``sparsity`` as a float, or raise ``ValueError`` unless it lies in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, Real) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def num_pruned(sparsity: float, n: int) -> int:
    """Number of weights removed when pruning a fraction ``sparsity`` of ``n``: ``round(sparsity*n)``."""
    return round(check_sparsity(sparsity) * n)


def _check_scores(scores: Tensor) -> None:
    if scores.ndim < 1:
        raise ValueError(f"scores must have at least 1 dimension, got shape {tuple(scores.shape)}")
    if scores.is_floating_point() and torch.isnan(scores).any():
        raise ValueError("scores contain NaN; importance scores must be finite or +-inf")


def keep_mask_by_count(scores: Tensor, n_prune: int, *, per_row: bool = False) -> Tensor:
    """Keep mask that drops exactly the ``n_prune`` lowest scores.

    Without ``per_row`` the count is over the whole tensor; with ``per_row`` it is per
    slice along dim -1 (every row loses ``n_prune``). Ties keep the lower index.
    """
    _check_scores(scores)
    flat = scores.reshape(-1, scores.shape[-1]) if per_row else scores.reshape(1, -1)  # (rows, n)
    n = flat.shape[1]
    if not 0 <= n_prune <= n:
        raise ValueError(
            f"n_prune must be in [0, {n}] for scores of shape {tuple(scores.shape)}, got {n_prune}"
        )
    if n_prune == 0:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    # Threshold at the n_prune-th smallest score (O(n), faster than a sort), then among scores equal to
    # the threshold prune the highest indices first, so ties keep the lower index.
    threshold = torch.kthvalue(flat, n_prune, dim=-1, keepdim=True).values  # (rows, 1)
    below = flat < threshold
    ties = flat == threshold
    to_prune = n_prune - below.sum(-1, keepdim=True)  # ties still to remove, >= 1
    ties_from_end = ties.flip(-1).cumsum(-1).flip(-1)  # ties at or after each position
    pruned = below | (ties & (ties_from_end <= to_prune))
    return (~pruned).reshape(scores.shape)


def unstructured_keep_mask(scores: Tensor, sparsity: float, *, per_row: bool = False) -> Tensor:
    """Keep the highest scores; prune exactly ``round(sparsity * numel)`` of them.

    With ``per_row=True`` each slice along dim -1 (each output row of an ``(out, in)``
    score) loses exactly ``round(sparsity * in)``, as Wanda compares weights per output
    (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs").
    """
    check_sparsity(sparsity)
    _check_scores(scores)
    n = scores.shape[-1] if per_row else scores.numel()
    return keep_mask_by_count(scores, num_pruned(sparsity, n), per_row=per_row)


def nm_keep_mask(scores: Tensor, nm: NM) -> Tensor:
    """Keep the ``nm.n`` highest scores in every group of ``nm.m`` along dim -1."""
    _check_scores(scores)
    shape = scores.shape
    if shape[-1] % nm.m:
        raise ValueError(
            f"N:M pattern {nm} needs the last dim divisible by M={nm.m}, got scores of shape {tuple(shape)}"
        )
    groups = scores.reshape(*shape[:-1], shape[-1] // nm.m, nm.m)  # (..., in/m, m)
    top = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., : nm.n]
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(-1, top, True)
    return mask.reshape(shape)


def mask_sparsity(mask: Tensor) -> float:
    """Fraction of ``False`` (pruned) entries in a keep mask."""
    return 1.0 - mask.count_nonzero().item() / max(mask.numel(), 1)


__all__ = [
    "NM",
    "check_sparsity",
    "keep_mask_by_count",
    "mask_sparsity",
    "nm_keep_mask",
    "num_pruned",
    "unstructured_keep_mask",
]

"""Uniform allocation: every layer gets the target sparsity (the default in SparseGPT,
Frantar & Alistarh 2023, and Wanda, Sun et al. 2023)."""

from collections.abc import Iterable

from prunekit.core.patterns import check_sparsity


def uniform_ratios(layer_names: Iterable[str], sparsity: float) -> dict[str, float]:
    """Map each layer name to ``sparsity``. Duplicate names raise ``ValueError``."""
    s = check_sparsity(sparsity)
    names = list(layer_names)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"layer_names must be unique, got duplicates {dup}")
    return {name: s for name in names}

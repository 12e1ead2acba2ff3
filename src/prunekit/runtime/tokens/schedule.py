"""LazyLLM schedules: tokens kept per layer, the default schedule scaled to a model's depth, and the mapping from
the shared `ratio` knob to a schedule.

LazyLLM (Fu et al. 2024, arXiv 2407.14057) prunes prompt tokens from chosen layers on; a schedule
`{layer: keep_fraction}` is cumulative over the prompt (layer l on processes `keep_count(T, f)` of the T tokens).

Default. The schedule measured on SmolLM2-135M (30 layers; bench/runtime/lazyllm.py, BENCHMARKS.md "LazyLLM"):
{8: 0.4, 18: 0.08}, TTFT 0.40 of dense at 2048 tokens with needle accuracy 0.96 vs 0.94. For L layers the two
pruning layers sit at the same depth, l1 = clamp(round(8 L / 30), 1, L - 1) and l2 = clamp(round(18 L / 30), 1, L - 1)
(rounded half up), keeping 0.4 and 0.08. When both round to the same layer (L = 2: layer 1) there is one stage,
keeping 0.4. L = 1 cannot prune (layer 0 has no earlier attention to score tokens): ConfigError.

ratio r = fraction of prompt-token work removed, averaged over layers: r = 1 - m with
m = (1 / L) * sum over layers of the fraction of prompt tokens the layer processes. For two stages,
m = (l1 + (l2 - l1) f1 + (L - l2) f2) / L. The mapping keeps the measured shape (same layers, f1 = 5 f2):
    f2 = (m L - l1) / (5 (l2 - l1) + L - l2),  f1 = 5 f2          while f1 <= 1, i.e. r >= r_low = 0.8 (L - l2) / L;
below r_low the first stage would keep everything, so only l2 prunes: f2 = 1 - r L / (L - l2) (continuous at r_low,
where f2 = 0.2); with one stage (L = 2) f = 1 - r L / (L - l1). r = 0 gives {} (dense).
Feasible range: 0 <= r < 1 - l1 / L (layers before l1 always process every token); 30 layers: [0, 0.733),
r_low = 0.32, and r = 0.568 gives the default {8: 0.4, 18: 0.08}; 2 layers: [0, 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import ConfigError

REFERENCE_LAYERS = 30  # SmolLM2-135M, where the default was measured
STAGE_DEPTHS = (8, 18)  # pruning layers of the measured schedule, out of REFERENCE_LAYERS
STAGE_KEEP = (0.4, 0.08)  # their keep fractions (ratio 5:1)
SHAPE = 5.0  # STAGE_KEEP[0] / STAGE_KEEP[1]


def check_schedule(schedule: Mapping[int, float]) -> dict[int, float]:
    """A valid schedule as {int layer >= 1: float fraction in (0, 1]}, fractions not growing with depth."""
    if not isinstance(schedule, Mapping):
        raise ConfigError(f"schedule must be a mapping {{layer: keep fraction}}, got {schedule!r}")
    out = {}
    for layer, fraction in dict(schedule).items():
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 1:
            raise ConfigError(f"schedule layer {layer!r} is invalid: pruning layers are integers >= 1 "
                              "(layer 0 has no earlier attention to score tokens)")
        if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"schedule[{layer}] = {fraction!r} is invalid: keep fractions are in (0, 1]")
        out[layer] = float(fraction)
    ordered = [out[k] for k in sorted(out)]
    if any(b > a for a, b in zip(ordered, ordered[1:], strict=False)):
        raise ConfigError(f"schedule {out} keeps more tokens at a deeper layer; fractions must not grow")
    return out


def keep_count(length: int, fraction: float) -> int:
    """Tokens kept out of `length` at keep fraction `fraction` (rounded half up, at least 1)."""
    return max(1, min(length, int(fraction * length + 0.5)))


def keep_counts(length: int, schedule: Mapping[int, float], layers: int) -> list[int]:
    """Tokens processed by each layer for a prompt of `length` tokens."""
    counts, current = [], length
    for index in range(layers):
        if index in schedule:
            current = min(current, keep_count(length, schedule[index]))
        counts.append(current)
    return counts


def mean_kept_fraction(schedule: Mapping[int, float], layers: int) -> float:
    """Fraction of prompt tokens processed per layer, averaged over the `layers` layers (1 - ratio)."""
    total, current = 0.0, 1.0
    for index in range(layers):
        current = min(current, schedule.get(index, current))
        total += current
    return total / layers


def stage_layers(layers: int) -> tuple[int, ...]:
    """The pruning layers of the measured schedule scaled to `layers`: (l1, l2), or (l1,) when they coincide."""
    if layers < 2:
        raise ConfigError(f"LazyLLM needs a model with at least 2 layers (layer 0 cannot prune), got {layers}")
    found = [min(layers - 1, max(1, int(depth * layers / REFERENCE_LAYERS + 0.5))) for depth in STAGE_DEPTHS]
    return tuple(sorted(set(found)))


def default_schedule(layers: int) -> dict[int, float]:
    """The measured schedule {8: 0.4, 18: 0.08} scaled to `layers` layers (one stage keeping 0.4 when L = 2)."""
    return dict(zip(stage_layers(layers), STAGE_KEEP, strict=False))


def max_ratio(layers: int) -> float:
    """Exclusive upper bound of ratio on a `layers`-layer model: 1 - l1 / L."""
    return 1.0 - stage_layers(layers)[0] / layers


def ratio_schedule(layers: int, ratio: float) -> dict[int, float]:
    """The schedule of the default's shape removing a fraction `ratio` of prompt-token work (see module doc)."""
    stages = stage_layers(layers)
    top = max_ratio(layers)
    if not 0.0 <= ratio < top:
        raise ConfigError(f"lazyllm ratio {ratio!r} is out of range for a {layers}-layer model: valid "
                          f"[0, {top:.3f}) (layers 0..{stages[0] - 1} always process every prompt token)")
    if ratio == 0.0:
        return {}
    kept = 1.0 - ratio
    last = stages[-1]
    if len(stages) == 2:
        first = stages[0]
        f2 = (kept * layers - first) / (SHAPE * (last - first) + layers - last)
        if SHAPE * f2 <= 1.0:
            return {first: SHAPE * f2, last: f2}
    return {last: 1.0 - ratio * layers / (layers - last)}

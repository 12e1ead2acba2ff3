"""Token-pruning presses (hidden states are dropped during prefill)."""

from .lazyllm import AuxEntry, LazyLLMPress
from .schedule import default_schedule, keep_counts, mean_kept_fraction, ratio_schedule

__all__ = ["LazyLLMPress", "AuxEntry", "keep_counts", "default_schedule", "ratio_schedule", "mean_kept_fraction"]

"""The explicit inputs of a pruning method, beside the model and its options.

Every method in the catalogue is called as `method(loaded, config, inputs, method=name)`. `inputs` carries only
what a method may read from the run: a calibration source (tokenizer -> (samples, seq_len) token ids, built once
per run), the seed of the run's calibration and random choices, and the dense model (the teacher of methods that
train while they prune). A recipe run builds it from its calibration section (`RunContext.inputs()`); a direct
caller passes `PruneInputs(calibration=lambda tokenizer: ids)` or nothing at all for a data-free method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass
class PruneInputs:
    """calibration: tokenizer -> (samples, seq_len) token ids, or None (data-free). seed: of the calibration
    draw and of random choices. dense: the unpruned model (a LoadedModel), or None. batches: calibration
    token ids given directly ((samples, seq_len) tensor), for a model without a tokenizer; they take precedence.
    example_inputs: what the dependency graph traces a plain module with (a tensor, a tuple of args or a dict)."""

    calibration: Callable[[Any], Any] | None = None
    seed: int = 0
    dense: Any = None
    batches: Any = None
    example_inputs: Any = None

    def windows(self, loaded: Any, why: str) -> Any:
        """The calibration token ids for `loaded`; a ConfigError saying `why` they are needed when there are none."""
        if self.batches is not None:
            return self.batches
        if getattr(loaded, "tokenizer", None) is None:
            raise ConfigError(f"{why} needs calibration data and {type(loaded.model).__name__} has no tokenizer to "
                              "draw it with: pass calibration= token ids, a (samples, seq_len) tensor.")
        if self.calibration is None:
            raise ConfigError(f"{why} needs calibration data: run it from a recipe, or pass "
                              f"PruneInputs(calibration=...) or windows=.")
        return self.calibration(loaded.tokenizer)


NO_INPUTS = PruneInputs()

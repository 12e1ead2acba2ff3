"""The catalogue of pruning methods: name -> options dataclass and implementation (imported lazily)."""

from __future__ import annotations

from .importance.criterion import CRITERIA
from .prune.config import SparseGPTConfig, WeightPruneConfig
from .prune.depth import DepthPruneConfig
from .prune.dpruner import DPrunerConfig
from .prune.llm_structured import LLMStructuredConfig
from .prune.structured import StructuredPruneConfig
from .recover.incremental import IncrementalPruneConfig
from .recover.joint import JointPruneConfig
from .registry import Registry

METHODS = Registry("method")
_ONESHOT = "prunekit.prune.oneshot:prune_weights"


def _weights(name: str, criterion: str, summary: str, config: type = WeightPruneConfig) -> None:
    """A one-shot weight pruning method: the Criterion at `criterion` ("module:attribute"), run by prune_weights."""
    CRITERIA.register(name, criterion, summary=summary, config=config, kind="weights")
    METHODS.register(name, _ONESHOT, config=config, kind="weights", summary=summary)


_weights("magnitude", "prunekit.importance.magnitude:MAGNITUDE",
         "|W|: remove the smallest weights of each layer (Han et al. 2015)")
_weights("random", "prunekit.importance.random:RANDOM", "random weights (baseline)")
_weights("wanda", "prunekit.importance.wanda:WANDA", "|W| x input norm, per output row (Sun et al. 2023)")
_weights("sparsegpt", "prunekit.prune.sparsegpt:SPARSEGPT",
         "OBS with lazy block updates, unstructured or N:M (Frantar & Alistarh 2023); "
         "dense_targets: GPTAQ asymmetric calibration (Li et al. 2025)", SparseGPTConfig)
_weights("d-pruner", "prunekit.prune.dpruner:DPRUNER",
         "OBS + domain Fisher (Zhang et al. 2024); experimental: loses to Wanda on SmolLM2 (BENCHMARKS.md)",
         DPrunerConfig)
_weights("ria", "prunekit.importance.ria:RIA", "(|W|/column sum + |W|/row sum) x input norm^0.5 (Zhang et al. 2024)")

_STRUCTURED = "prunekit.prune.structured:prune_structured"
for _criterion, _summary in [
    ("l1", "L1 norm of each coupled group"), ("l2", "L2 norm of each coupled group"),
    ("taylor", "first-order Taylor |w * dL/dw| of each group (calibration backward)"), ("random", "random groups"),
]:
    METHODS.register(f"structured-{_criterion}", _STRUCTURED, config=StructuredPruneConfig, kind="structured",
                     summary=f"remove channels / MLP neurons / heads by {_summary} (dependency graph)")

METHODS.register("llm-structured", "prunekit.prune.llm_structured:prune_llm_structured", config=LLMStructuredConfig,
                 kind="structured", summary="LLM heads / GLU neurons by FLAP, MAW/VOW/PON or L2, bias compensation, "
                 "least-squares refit (An et al. 2024; Martra 2025)")
METHODS.register("depth", "prunekit.prune.depth:prune_depth", config=DepthPruneConfig, kind="structured",
                 summary="remove whole decoder blocks by angular distance, at random, or the last ones (ShortGPT)")
METHODS.register("incremental", "prunekit.recover.incremental:prune_incremental", config=IncrementalPruneConfig,
                 kind="structured", summary="Adapt-Accel: ~5% Taylor-scored heads / neurons per cycle, block sparsity "
                 "adapted from block importance, recovery training between cycles (Pan et al. 2025)")
METHODS.register("joint-lora", "prunekit.recover.joint:prune_joint", config=JointPruneConfig, kind="structured",
                 summary="ATP / SPLoRA: heads / GLU neurons gated by learned hard masks (Gumbel-sigmoid or hard "
                 "concrete) trained with LoRA under a parameter-budget penalty, then removed (Lu et al. 2024)")

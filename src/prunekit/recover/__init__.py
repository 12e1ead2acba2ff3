"""Recovery after pruning: LoRA (peft) or full fine-tuning with cross-entropy or distillation from the dense
model, keeping every pruned weight at zero."""

from ..core.entry import make_callable
from .config import RecoverConfig

__all__ = ["RecoverConfig", "recover"]
make_callable(__name__)  # prunekit.recover(...) calls prunekit.api.recover


def __getattr__(name: str):
    if name == "recover":
        from .run import recover

        return recover
    raise AttributeError(name)

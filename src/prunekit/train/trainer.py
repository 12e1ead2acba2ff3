"""The one training loop of prunekit: recovery, train-time pruning, routers and gates all run on it.

AdamW with gradient accumulation, a learning-rate schedule (train/schedule.py), gradient clipping, a seeded
and resumable data stream (train/data.py), periodic validation, progress with tokens/s, loss and ETA, and
checkpoints every N steps. An interrupt (Ctrl-C, SIGTERM) writes a checkpoint before it propagates; a new
Trainer with the same settings and checkpoint path continues from it to the same weights as an uninterrupted
run. Masks, gates and data mixtures are plug-ins (TrainPlugin), not forks of the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.progress import log, progress_enabled
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .schedule import lr_factor

LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


class TrainPlugin:
    """Hooks on the loop (all optional). State returned by `state_dict` is checkpointed and restored; it should
    change only in `after_step` / `after_eval`, so a checkpoint taken between steps is consistent."""

    def after_backward(self, trainer: Trainer) -> None:
        """Gradients of the whole batch are accumulated (before clipping and the optimizer step)."""

    def after_step(self, trainer: Trainer, step: int) -> None:
        """The optimizer stepped (`step` is 0-based)."""

    def after_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """A validation ran; `metrics` are its results."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class TrainResult:
    steps: int
    tokens: int
    seconds: float  # training time (validation excluded), over all resumed parts
    history: list[dict[str, float]] = field(default_factory=list)  # one row per step
    evals: list[dict[str, float]] = field(default_factory=list)  # validation rows, with "step" and "tokens"
    resumed_from: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """Train `parameters` of `model` on `stream` batches with `loss_fn(ids, sources) -> (loss, parts)`."""

    def __init__(self, model: nn.Module, parameters: Sequence[tuple[str, nn.Parameter]], config: TrainConfig,
                 loss_fn: LossFn, stream: Any, *, validate: Callable[[], dict[str, float]] | None = None,
                 plugins: Sequence[TrainPlugin] = (), checkpoint: str | Path | None = None,
                 description: str = "train", extra_groups: Sequence[dict] = ()) -> None:
        """extra_groups: more parameters with their own optimizer settings, each {"params": [(name, Parameter)],
        "lr": ..., "weight_decay": ...} (same schedule; e.g. mask logits that learn faster than adapters)."""
        self.model = model
        self.parameters = list(parameters) + [item for group in extra_groups for item in group["params"]]
        self.config = config
        self.loss_fn = loss_fn
        self.stream = stream
        self.validate = validate
        self.plugins = list(plugins)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.description = description
        groups = [{"params": [p for _n, p in parameters]}]
        groups += [{**group, "params": [p for _n, p in group["params"]]} for group in extra_groups]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        steps = config.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(
            s, steps, config.schedule, warmup=config.warmup, floor=config.min_lr, decay=config.decay))
        self.result = TrainResult(0, 0, 0.0)
        self._between_steps: dict = {}  # data order and RNG as of the last completed step

    def autocast(self):
        """bfloat16 autocast for the forward passes when the run's precision asks for it."""
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16(self.config.precision, device))

    # --- checkpoints -------------------------------------------------------------------------------------------
    def _state(self, step: int) -> dict:
        return {
            "config": dataclasses.asdict(self.config), "step": step,
            "parameters": {name: p.detach().clone() for name, p in self.parameters},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            **self._between_steps,
            "plugins": [p.state_dict() for p in self.plugins], "result": dataclasses.asdict(self.result),
        }

    def _restore(self, state: dict) -> int:
        with torch.no_grad():
            for name, p in self.parameters:
                p.copy_(state["parameters"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.stream.load_state_dict(state["stream"])
        self._mark_step_boundary()
        for plugin, plugin_state in zip(self.plugins, state["plugins"], strict=True):
            plugin.load_state_dict(plugin_state)
        self.result = TrainResult(**state["result"])
        self.result.resumed_from = state["step"]
        return state["step"]

    def _mark_step_boundary(self) -> None:
        self._between_steps = {"rng": torch.get_rng_state(), "stream": self.stream.state_dict()}

    def save(self, step: int) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self._state(step))

    # --- the loop ----------------------------------------------------------------------------------------------
    def _evaluate(self, step: int) -> None:
        if self.validate is None:
            return
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            metrics = self.validate()
        self.model.train(was_training)
        self.result.evals.append({"step": step, "tokens": self.result.tokens, **metrics})
        for plugin in self.plugins:
            plugin.after_eval(self, metrics)

    def _step(self, step: int) -> dict[str, float]:
        config = self.config
        ids, sources = self.stream.batch(step, config.batch_size)  # (batch, seq_len), (batch,)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for part_ids, part_sources in zip(ids.split(config.micro_batch_size), sources.split(config.micro_batch_size),
                                          strict=True):
            with self.autocast():
                loss, parts = self.loss_fn(part_ids, part_sources)
            (loss / config.accumulation).backward()
            for key, value in {"loss": loss.item(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + value / config.accumulation
        for plugin in self.plugins:
            plugin.after_backward(self)
        with deferred_interrupts():  # the update is applied whole or not at all
            if config.max_grad_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_([p for _n, p in self.parameters], config.max_grad_norm)
                totals["grad_norm"] = float(norm)
            totals["lr"] = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            for plugin in self.plugins:
                plugin.after_step(self, step)
            self.result.steps = step + 1
            self.result.tokens += config.batch_size * config.seq_len
            self.result.history.append({"step": step + 1, "tokens": self.result.tokens, **totals})
            self._mark_step_boundary()
        return totals

    def fit(self) -> TrainResult:
        """Train to the budget (resuming from the checkpoint when there is one); the model is left in eval mode."""
        config, steps = self.config, self.config.steps
        state = load_checkpoint(self.checkpoint, dataclasses.asdict(config)) if self.checkpoint else None
        if state is not None:
            start = self._restore(state)
            log(f"  {self.description}: resuming from the checkpoint at step {start}/{steps}")
        else:
            start = 0
            torch.manual_seed(config.seed)
            self._mark_step_boundary()
            self._evaluate(0)
        self.model.train()
        progress = _Progress(self.description, steps, start)
        step = start
        try:
            for step in range(start, steps):
                t0 = time.perf_counter()
                row = self._step(step)
                self.result.seconds += time.perf_counter() - t0
                progress.update(step + 1, row["loss"], self.result)
                done = step + 1
                if config.eval_every and done % config.eval_every == 0 and done < steps:
                    self._evaluate(done)
                if config.checkpoint_every and done % config.checkpoint_every == 0 and done < steps:
                    self.save(done)
        except BaseException as exc:
            if not isinstance(exc, Exception) and self.checkpoint is not None:  # Ctrl-C, SIGTERM: keep the work
                self.save(self.result.steps)
                log(f"  {self.description}: interrupted after step {self.result.steps}/{steps}; checkpoint "
                    f"written to {self.checkpoint}: run the same command again to resume")
            raise
        finally:
            progress.close()
        self.model.eval()
        self._evaluate(steps)
        if self.checkpoint is not None and self.checkpoint.is_file():
            self.checkpoint.unlink()  # finished: nothing to resume
        return self.result


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block and act on them when it ends, so an optimizer update and its
    bookkeeping are never half done when a checkpoint is written. (Python handlers always run in the main thread,
    whichever thread the OS delivered the signal to, so the handlers are swapped rather than the signal mask.)
    A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append((signum, frame)))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in received:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def use_bf16(precision: str, device: str = "cpu") -> bool:
    """Whether `precision` ("auto", "fp32", "bf16") means bfloat16 autocast on `device`."""
    if precision != "auto":
        return precision == "bf16"
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return device == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class _Progress:
    """A tqdm bar on a terminal, else a log line every ~5% of the steps: loss, tokens/s and ETA."""

    def __init__(self, description: str, steps: int, start: int) -> None:
        self.description, self.steps = description, steps
        self.every = max(1, steps // 20)
        self.bar = None
        if progress_enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, initial=start, desc=description, unit="step", leave=False,
                            dynamic_ncols=True)

    def update(self, done: int, loss: float, result: TrainResult) -> None:
        rate = result.tokens_per_second
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
        elif done % self.every == 0 or done == self.steps:
            per_step = result.seconds / max(1, done - result.resumed_from)
            eta = per_step * (self.steps - done)
            log(f"  {self.description}: step {done}/{self.steps} loss {loss:.3f} {rate:.0f} tok/s "
                f"ETA {_clock(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

"""LazyLLM press: progressively drop prompt tokens during prefill; revive them from an aux cache during decode.

Fu et al. 2024, "LazyLLM: Dynamic Token Pruning for Efficient Long Context LLM Inference" (arXiv 2407.14057).

Prefill. `schedule = {layer: keep_fraction}`: from `layer` on, only `keep_count(T, fraction)` of the T prompt
tokens are processed (fractions are cumulative over the prompt and must not grow with depth; layer 0 cannot
prune). Importance at pruning layer l = attention that the last token gives each alive token at layer l-1, mean
over heads. The last `keep_last` prompt tokens are always kept (e.g. the question and chat suffix of a long-context
prompt, as SnapKV keeps its observation window; 1 = the paper). `window` > 1 averages the attention of the last
`window` prompt queries instead of the last one, and `pool` > 1 max-pools the scores over `pool` neighbouring
positions, so spans around attended tokens survive together (both from SnapKV, Li et al. 2024, arXiv 2404.14469).
They matter for retrieval: in SmolLM2-135M the last token's attention at early layers rarely lands on a needle's
digits, which the answer needs only at later decode steps (bench/runtime/lazyllm.py). Revival during decode always
scores with the new token alone, unpooled.

Defaults = what was measured (BENCHMARKS.md, "LazyLLM"): pool 15, window 1, keep_last 32 (pool=1, keep_last=1 is
the paper's plain last-token score) and, with neither `schedule` nor `ratio` given, {8: 0.4, 18: 0.08}
on a 30-layer model, scaled to other depths; `ratio` (fraction of prompt-token work removed, averaged
over layers) maps to a schedule of the same shape. Both are resolved against the model's depth when the press is
entered (`schedule_for`, `active_schedule`); the mapping and its feasible range are in
`prunekit.runtime.tokens.schedule`. Giving both `schedule` and `ratio` is an error.

Positions. Kept tokens keep their ORIGINAL positions: a pre-hook on every decoder layer slices the hidden states,
`position_embeddings` (RoPE cos/sin), `position_ids` and any 4D mask by the alive positions; queries and keys are
then the same position-sorted set, so the causal SDPA path stays exact. A dropped token thus has KV entries only in
layers < l. Its input hidden state at layer l goes to the aux cache (`aux_cache[l]`). After the last block the
sequence is scattered back to full length (dropped rows carry their aux state), so output shapes are unchanged; only
the rows of kept tokens are real predictions.

Decode and revival. Each decode step attends to the KV entries that exist in each layer. With `revive=True`
(batch size 1), at each pruning layer l the new token's attention at layer l-1 (over all entries there) selects
the top `fraction * N` entries, fraction = `revive_fraction` or the schedule's; aux tokens of layer l among them
are revived: their aux states are prepended to the step's rows at layer l, run through layers l..L-1 with their
original positions (RoPE recomputed, an explicit positional mask) and their KV is appended to those layers, so
every token is computed at most once per layer. Their outputs are then discarded. Limits: a revived token at
layer l sees only the keys present at that step, and kept tokens' states after layer l were computed without the
dropped ones (the paper's approximation); so only when the single pruning layer is the last layer does
`revive_fraction=1.0` restore the dense cache exactly at the first decode step (tested). Revival runs for batch
size 1 only (larger batches decode over the existing entries); padded batches are not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...utils.hooks import HookSet
from .._attn import (
    attention_scaling,
    cache_layer,
    call_arg,
    drop_unpadded_mask,
    gather_rows,
    kv_groups,
    project_qk,
)
from ..base import RENAMED_RATIO, Press, attention_modules, decoder_layers, num_layers, validate_ratio
from ._calls import LayerCall, max_pool_scores, positional_mask, slice_sequence_inputs, window_importance
from .schedule import check_schedule, default_schedule, keep_count, keep_counts, ratio_schedule


def select_kept(scores: torch.Tensor, keep: int, last: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, n) -> (kept, dropped) local row indices, each sorted; the last `last` rows are always kept (the
    most recent first when `keep` < `last`)."""
    scores = scores.clone().float()
    last = min(max(1, last), scores.shape[-1])
    top = scores.abs().amax() + 1.0 if scores.numel() else 1.0
    scores[:, -last:] = top + torch.arange(last, dtype=scores.dtype, device=scores.device)
    order = scores.argsort(dim=-1, descending=True, stable=True)  # (B, n)
    return order[:, :keep].sort(dim=-1).values, order[:, keep:].sort(dim=-1).values


@dataclass
class AuxEntry:
    """Hidden states (B, n, d) entering layer `layer` of the tokens dropped there, and their positions (B, n)."""

    hidden: torch.Tensor
    positions: torch.Tensor


@dataclass
class LazyLLMPress(Press):
    """Progressive token pruning during prefill with an aux cache for revival during decode.

    `schedule` ({layer: keep fraction}) or `ratio` (fraction of prompt-token work removed, averaged over
    layers) sets how much is pruned; with neither, the measured default scaled to the model's depth (module doc)."""

    schedule: Mapping[int, float] | None = None
    ratio: float | None = None
    revive: bool = True
    revive_fraction: float | None = None
    window: int = 1
    pool: int = 15
    keep_last: int = 32

    RENAMED: ClassVar[dict[str, str]] = RENAMED_RATIO
    drops_tokens: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.schedule is not None and self.ratio is not None:
            raise ConfigError("give either schedule or ratio, not both (ratio maps to a schedule of the default's "
                              "shape)")
        if self.schedule is not None:
            self.schedule = check_schedule(self.schedule)
        if self.ratio is not None:
            self.ratio = validate_ratio(self.ratio)
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise ConfigError(f"window must be a positive integer (prompt queries that score tokens), got "
                              f"{self.window!r}")
        if not isinstance(self.pool, int) or isinstance(self.pool, bool) or self.pool < 1 or self.pool % 2 == 0:
            raise ConfigError(f"pool must be a positive odd integer (max-pool kernel over positions), "
                              f"got {self.pool!r}")
        if not isinstance(self.keep_last, int) or isinstance(self.keep_last, bool) or self.keep_last < 1:
            raise ConfigError(f"keep_last must be a positive integer (prompt tokens always kept), got "
                              f"{self.keep_last!r}")
        if self.revive_fraction is not None and not 0.0 < self.revive_fraction <= 1.0:
            raise ConfigError(f"revive_fraction must be in (0, 1] or None, got {self.revive_fraction!r}")
        self.active_schedule: dict[int, float] = dict(self.schedule or {})
        self.reset()

    def schedule_for(self, layers: int) -> dict[int, float]:
        """The schedule this press runs on a `layers`-layer model (explicit, mapped from the ratio, or default)."""
        if self.schedule is not None:
            return dict(self.schedule)
        if self.ratio is not None:
            return ratio_schedule(layers, self.ratio)
        return default_schedule(layers)

    def validate(self, model: nn.Module) -> None:
        count = num_layers(model)
        schedule = self.schedule_for(count)
        bad = [layer for layer in schedule if layer >= count]
        if bad:
            raise ConfigError(f"schedule names layers {bad} but the model has layers 0..{count - 1}")
        self.active_schedule = schedule

    def reset(self) -> None:
        self.tokens_per_layer: list[int] = []
        self.step_tokens_per_layer: list[int] = []
        self.aux_cache: dict[int, AuxEntry] = {}
        self.revived_per_layer: dict[int, int] = {}
        self._layer_pos: list[torch.Tensor] = []
        self._scores: torch.Tensor | None = None
        self._selected: torch.Tensor | None = None
        self._mode = "off"

    # --- install -------------------------------------------------------------------------------------------------
    def install(self, model: nn.Module, hooks: HookSet, stack: ExitStack) -> None:
        blocks, attns = decoder_layers(model), attention_modules(model)
        base = getattr(model, "model", model)
        self._rotary = getattr(base, "rotary_emb", None)  # None for absolute-position models (GPT-2)
        hooks.forward_pre(model, self._start, with_kwargs=True)
        for index, block in enumerate(blocks):
            hooks.forward_pre(block, self._make_pre(index), with_kwargs=True)
        for layer in self.active_schedule:
            hooks.forward(attns[layer - 1], self._make_scorer(layer), with_kwargs=True)
        hooks.forward(blocks[-1], self._finish, with_kwargs=True)

    def _start(self, model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        cache = call_arg(args, kwargs, "cache")
        cache = kwargs.get("past_key_values") if cache is None else cache
        tokens = call_arg(args, kwargs, "input_ids", 0)
        tokens = kwargs.get("inputs_embeds") if tokens is None else tokens
        self._rows_in = int(tokens.shape[1])
        fresh = cache is None or cache.get_seq_length() == 0
        if fresh:
            self.reset()
            self._mode = "prefill" if self._rows_in > 1 else "off"
            self._length = self._rows_in
        else:
            self._mode = "decode" if self._layer_pos else "off"
        self._cache = cache
        if self._mode != "off":
            kwargs = {**kwargs, "attention_mask": drop_unpadded_mask(kwargs.get("attention_mask"), "LazyLLMPress")}
        return args, kwargs

    # --- per-layer pre-hook --------------------------------------------------------------------------------------
    def _make_pre(self, index: int):
        def hook(block: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if self._mode == "off":
                return None
            call = LayerCall(block, args, kwargs)
            with torch.no_grad():
                if self._mode == "prefill":
                    self._prefill_layer(index, call)
                else:
                    self._decode_layer(index, call)
            return call.result()

        return hook

    def _prefill_layer(self, index: int, call: LayerCall) -> None:
        hidden = call.get("hidden_states")  # (B, n, d)
        if index == 0:
            batch = hidden.shape[0]
            self._alive = torch.arange(self._length, device=hidden.device).expand(batch, -1)  # (B, T)
        if index in self.active_schedule and self._scores is not None:
            keep = keep_counts(self._length, self.active_schedule, index + 1)[index]
            if keep < hidden.shape[1]:
                kept, dropped = select_kept(self._scores, keep, self.keep_last)  # (B, keep), (B, n - keep)
                self.aux_cache[index] = AuxEntry(gather_rows(hidden, dropped, 1), gather_rows(self._alive, dropped, 1))
                hidden = gather_rows(hidden, kept, 1)
                self._alive = gather_rows(self._alive, kept, 1)
                call.set("hidden_states", hidden)
        if self._alive.shape[1] < self._length:
            slice_sequence_inputs(call, self._alive)
        self._scores = None
        self.tokens_per_layer.append(int(hidden.shape[1]))
        self._layer_pos.append(self._alive.clone())

    def _decode_layer(self, index: int, call: LayerCall) -> None:
        hidden = call.get("hidden_states")  # (B, q, d)
        if index == 0:
            position_ids = call.get("position_ids")
            if position_ids is None:
                start = int(self._layer_pos[0][0, -1]) + 1
                position_ids = torch.arange(start, start + hidden.shape[1], device=hidden.device)[None]
            self._step_pos = position_ids.expand(hidden.shape[0], -1)  # (B, q)
            self._step_pe = None
            self.step_tokens_per_layer = []
        if index in self.active_schedule and self.revive and self._selected is not None and index in self.aux_cache:
            hidden = self._revive(index, hidden)
            call.set("hidden_states", hidden)
        self._selected = None
        previous = self._layer_pos[index]
        changed = self._step_pos.shape[1] != self._rows_in
        mask = call.get("attention_mask")
        if changed or (isinstance(mask, torch.Tensor) and previous.shape[1] != self._layer_pos[0].shape[1]):
            keys = torch.cat([previous, self._step_pos], dim=1)  # (B, k + q)
            call.set("attention_mask", positional_mask(keys, self._step_pos, hidden.dtype))
        if changed:
            if call.has("position_ids"):
                call.set("position_ids", self._step_pos)
            if call.get("position_embeddings") is not None:
                call.set("position_embeddings", self._step_pe)
        self._layer_pos[index] = torch.cat([previous, self._step_pos], dim=1)
        self.step_tokens_per_layer.append(int(hidden.shape[1]))

    def _revive(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        entry = self.aux_cache[index]
        if hidden.shape[0] != 1:
            return hidden  # revival is implemented for batch size 1 only
        chosen = torch.isin(entry.positions[0], self._selected[0])  # (n_aux,)
        count = int(chosen.sum())
        if count == 0:
            return hidden
        self.revived_per_layer[index] = self.revived_per_layer.get(index, 0) + count
        hidden = torch.cat([entry.hidden[:, chosen], hidden], dim=1)  # (1, r + q, d)
        self._step_pos = torch.cat([entry.positions[:, chosen], self._step_pos], dim=1)  # (1, r + q)
        if bool((~chosen).any()):
            self.aux_cache[index] = AuxEntry(entry.hidden[:, ~chosen], entry.positions[:, ~chosen])
        else:
            del self.aux_cache[index]
        if self._rotary is not None:
            self._step_pe = self._rotary(hidden, position_ids=self._step_pos)
        return hidden

    # --- scoring on layer l-1 ------------------------------------------------------------------------------------
    def _make_scorer(self, layer: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if self._mode == "off":
                return
            with torch.no_grad():
                scores = self._last_token_scores(module, args, kwargs)  # (B, n)
            if self._mode == "prefill":
                self._scores = scores
            elif self.revive and layer in self.aux_cache:
                fraction = self.revive_fraction or self.active_schedule[layer]
                top = keep_count(scores.shape[1], fraction)
                order = scores.topk(top, dim=-1).indices  # (B, top)
                self._selected = gather_rows(self._layer_pos[layer - 1], order, 1)

        return hook

    def _last_token_scores(self, module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
        """(B, n) importance of the n entries at this layer: attention of the last token (of the last `window`
        prompt tokens during prefill), mean over heads, max-pooled over `pool` positions during prefill."""
        hidden = call_arg(args, kwargs, "hidden_states", 0)  # (B, n, d)
        w = min(self.window, hidden.shape[1]) if self._mode == "prefill" else 1
        pe = kwargs.get("position_embeddings")
        last_pe = None if pe is None else (pe[0][:, -w:], pe[1][:, -w:])
        q_last, _ = project_qk(module, hidden[:, -w:], last_pe)  # (B, H, w, D)
        layer = cache_layer(self._cache, int(module.layer_idx))
        if layer is not None and (self._mode == "decode" or layer.keys.shape[-2] == hidden.shape[1]):
            keys = layer.keys  # (B, Hkv, n, D), post-RoPE as cached
        else:
            _, keys = project_qk(module, hidden, pe)
        scores = window_importance(q_last, keys, kv_groups(module), attention_scaling(module))
        if self._mode == "prefill":  # prefill rows are sorted by position, so neighbours are adjacent
            scores = max_pool_scores(scores, self.pool)
        return scores

    # --- after the last block ------------------------------------------------------------------------------------
    def _finish(self, block: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if self._mode == "off":
            return None
        hidden = output[0] if isinstance(output, tuple) else output  # (B, n, d)
        if self._mode == "prefill" and hidden.shape[1] < self._length:
            full = hidden.new_zeros(hidden.shape[0], self._length, hidden.shape[2])  # (B, T, d)
            for entry in self.aux_cache.values():
                full.scatter_(1, entry.positions[..., None].expand(-1, -1, full.shape[2]), entry.hidden)
            full.scatter_(1, self._alive[..., None].expand(-1, -1, full.shape[2]), hidden)
            hidden = full
        elif self._mode == "decode" and hidden.shape[1] > self._rows_in:
            hidden = hidden[:, -self._rows_in:]
        else:
            return None
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

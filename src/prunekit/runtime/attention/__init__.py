"""Sparse-attention presses installed as attention functions (DELTA for decode, HiP for prefill)."""

from .delta import DeltaPress, page_scores, select_pages
from .hip import FlopCount, HipPress, attention_flops, gathered_attention, hip_select

__all__ = ["DeltaPress", "page_scores", "select_pages", "HipPress", "hip_select", "gathered_attention",
           "attention_flops", "FlopCount"]

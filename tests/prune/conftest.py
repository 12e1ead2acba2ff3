"""Shared helpers of the pruning tests."""

import pytest
import torch

from prunekit.prune.llm_structured import prune_llm_structured
from prunekit.testing import tiny_loaded


@pytest.fixture
def llm_output_error():
    """fn(config, ids) -> (report, mean squared logit change) of a fresh 2-layer tiny Llama pruned with `config`
    calibrated on `ids`."""
    def run(config, ids):
        loaded = tiny_loaded("llama", layers=2)
        with torch.no_grad():
            dense = loaded.model(ids).logits
        report = prune_llm_structured(loaded, config, method="llm-structured", windows=ids)
        with torch.no_grad():
            return report, (loaded.model(ids).logits - dense).square().mean().item()
    return run

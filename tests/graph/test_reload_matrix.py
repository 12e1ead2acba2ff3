"""Save -> prunekit.load in a fresh process for every structured path, on tiny random models of every family.

Cells: llm-structured x criterion x allocation x recovery, structured-* x scope x allocation, depth x order.
Each cell runs the recipe's own prune and save stages (the plan format a recipe writes); one fresh process then
loads every saved folder and reports logits and greedy tokens, which must equal the pruned model's before saving.
Cells a family cannot run (GLU criteria on GPT-2 / BERT, ...) must fail with ConfigError before saving.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.importance.unit_criteria import UNIT_CRITERIA
from prunekit.models import load
from prunekit.pipeline import RunContext, run_stage
from prunekit.prune.llm_structured import ALLOCATIONS
from prunekit.prune.structured import CRITERIA as GRAPH_CRITERIA
from prunekit.prune.structured import SCOPES
from prunekit.recipe import parse_recipe
from prunekit.recipe.stages import parse_stage
from prunekit.testing import CharTokenizer, tiny_model

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gpt2", "bert")
GLU = ("llama", "qwen2", "qwen3", "mistral")
RECOVERY = ("none", "bias_compensation", "refit", "scale_tuning")
GREEDY_TOKENS = 16
torch.set_num_threads(1)


def cells():
    """(cell id, family, prune options, expected to work)."""
    for family in FAMILIES:
        for criterion in UNIT_CRITERIA.names():
            for allocation in ALLOCATIONS:
                for recovery in RECOVERY:
                    options = {"method": "llm-structured", "ratio": 0.3, "criterion": criterion,
                               "allocation": allocation, **{r: r == recovery for r in RECOVERY[1:]}}
                    works = family in GLU or not UNIT_CRITERIA.load(criterion).glu
                    yield f"{family}-llm-{criterion}-{allocation}-{recovery}", family, options, works
        for criterion in GRAPH_CRITERIA:
            for scope in [[s] for s in SCOPES] + [["mlp", "heads"]]:
                for allocation in ("uniform", "global"):
                    options = {"method": f"structured-{criterion}", "ratio": 0.3, "scope": scope,
                               "allocation": allocation}
                    works = family != "bert" or (scope != ["channels"] and criterion != "taylor")
                    yield f"{family}-{criterion}-{'+'.join(scope)}-{allocation}", family, options, works
        for order in ("angular", "random", "last"):
            yield f"{family}-depth-{order}", family, {"method": "depth", "blocks": 1, "order": order}, True


CELLS = list(cells())


def outputs(model, ids, causal):
    """(logits or last hidden states, greedy tokens or None)."""
    with torch.no_grad():
        first = model(ids)[0]
        if not causal:
            return first, None
        tokens = model.generate(ids, max_new_tokens=GREEDY_TOKENS, do_sample=False, min_new_tokens=GREEDY_TOKENS,
                                pad_token_id=0, eos_token_id=None)
    return first, tokens


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """{cell id: (expected, reloaded) or the ConfigError message}, saved and reloaded in one fresh process."""
    root = tmp_path_factory.mktemp("matrix")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(f"sample text number {i} with some words " * 6 for i in range(100)))
    ctx = RunContext(parse_recipe({"calibration": {"corpus": str(corpus), "samples": 4, "seq_len": 32}}), root)
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(3))
    torch.save(ids, root / "ids.pt")
    expected, refused = {}, {}
    for cell, family, options, _works in CELLS:
        loaded = load(tiny_model(family, layers=3))
        loaded.tokenizer = CharTokenizer()
        try:
            run_stage(parse_stage({"prune": options}, cell), loaded, ctx, cell)
        except ConfigError as exc:
            refused[cell] = str(exc)
            continue
        loaded.tokenizer = None  # the test tokenizer cannot be saved
        run_stage(parse_stage({"save": {}}, cell), loaded, ctx, cell)
        expected[cell] = outputs(loaded.model, ids, family != "bert")
    (root / "cells.json").write_text(json.dumps(sorted(expected)))
    script = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads(1)  # as in this module: the same float summation order
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from prunekit.models import load
        from test_reload_matrix import outputs
        root = {str(root)!r}
        ids = torch.load(root + "/ids.pt")
        got = {{cell: outputs(load(root + "/models/" + cell).model, ids, not cell.startswith("bert"))
               for cell in json.loads(open(root + "/cells.json").read())}}
        torch.save(got, root + "/got.pt")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    got = torch.load(root / "got.pt")
    return {cell: (expected[cell], got[cell]) for cell in expected} | refused


@pytest.mark.parametrize("cell,family,options,works", CELLS, ids=[c[0] for c in CELLS])
def test_saved_model_reloads_with_equal_logits_and_tokens(matrix, cell, family, options, works):
    result = matrix[cell]
    if not works:
        assert isinstance(result, str), f"{cell} should be refused before saving"
        return
    assert not isinstance(result, str), f"{cell} failed: {result}"
    (logits, tokens), (logits_again, tokens_again) = result
    assert torch.equal(logits, logits_again), f"max |diff| {(logits - logits_again).abs().max().item()}"
    if tokens is not None:
        assert tokens.shape[1] == 12 + GREEDY_TOKENS
        assert torch.equal(tokens, tokens_again)


def test_the_matrix_prunes_something_in_every_working_cell(matrix):
    """Guard against a matrix of no-ops: every working cell changed the model's outputs."""
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(3))
    for cell, family, _options, works in CELLS:
        if not works:
            continue
        dense = tiny_model(family, layers=3)
        (logits, _), _ = matrix[cell]
        with torch.no_grad():
            reference = dense(ids)[0]
        assert logits.shape != reference.shape or not torch.equal(logits, reference), cell

"""One-shot criteria as plug-ins: the Criterion contract, the registry, and RIA's hand-computed scores."""

import re

import pytest
import torch

from prunekit.core.patterns import unstructured_keep_mask
from prunekit.core.typed import from_dict
from prunekit.importance.criterion import CRITERIA, Criterion
from prunekit.importance.magnitude import MAGNITUDE
from prunekit.importance.ria import RIA, ria_scores
from prunekit.importance.wanda import WANDA
from prunekit.methods import METHODS
from prunekit.models import load
from prunekit.pipeline import RunContext
from prunekit.recipe import parse_recipe
from prunekit.testing import CharTokenizer, layer_inputs, tiny_model

torch.set_num_threads(1)

W = torch.tensor([[1.0, -2.0, 0.0, 4.0], [-3.0, 1.0, 2.0, 0.0], [0.0, 1.0, -1.0, 2.0]])
NORM_SQ = torch.tensor([1.0, 16.0, 81.0, 256.0])  # ||X_j||^2 -> ||X_j|| = 1, 4, 9, 16 -> ^0.5 = 1, 2, 3, 4


def test_ria_matches_the_hand_computed_scores_and_mask():
    # column sums of |W|: 4, 4, 3, 6; row sums: 7, 6, 4
    expected = torch.tensor([
        [(1 / 4 + 1 / 7) * 1, (2 / 4 + 2 / 7) * 2, 0.0, (4 / 6 + 4 / 7) * 4],
        [(3 / 4 + 3 / 6) * 1, (1 / 4 + 1 / 6) * 2, (2 / 3 + 2 / 6) * 3, 0.0],
        [0.0, (1 / 4 + 1 / 4) * 2, (1 / 3 + 1 / 4) * 3, (2 / 6 + 2 / 4) * 4],
    ])
    scores = ria_scores(W, NORM_SQ)
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(RIA.score(W, {"norms": NORM_SQ}, None), expected)
    # half of the layer: the three zeros and the scores 0.39, 0.83 and 1.0 go
    keep = unstructured_keep_mask(scores, 0.5, per_row=RIA.group == "row")
    assert torch.equal(keep, torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1]]).bool())
    # the exponent a: a = 0 leaves the relative importance alone
    torch.testing.assert_close(ria_scores(W, NORM_SQ, a=0.0), expected / torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_ria_gives_an_all_zero_row_or_column_zero_scores_not_nan():
    weight = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    scores = ria_scores(weight, torch.ones(2))
    assert torch.equal(scores, torch.tensor([[0.0, 0.0], [0.0, 2.0]]))


def test_the_ria_method_prunes_the_hand_computed_mask_of_a_layer(tmp_path):
    """Block 0 sees the dense embeddings, so its RIA mask follows from one hooked forward pass."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"sample text number {i} with some words " * 6 for i in range(300)))
    loaded = load(tiny_model("llama", vocab=128, layers=1))
    loaded.tokenizer = CharTokenizer()
    ctx = RunContext(parse_recipe({"calibration": {"corpus": str(corpus), "samples": 4, "seq_len": 32}}), None)
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    x = layer_inputs(loaded.model, q_proj, ctx.calibration(loaded.tokenizer))  # (tokens, in)
    expected = unstructured_keep_mask(ria_scores(q_proj.weight, x.pow(2).sum(0)), 0.5)
    METHODS.load("ria")(loaded, from_dict(METHODS.get("ria").config, {}, "ria"), ctx.inputs(), method="ria")
    assert torch.equal(q_proj.weight != 0, expected)
    assert (~expected).sum(1).unique().numel() > 1  # compared over the layer: rows lose different counts


def test_every_weight_method_names_a_registered_criterion():
    weights = [e.name for e in METHODS.entries() if e.kind == "weights"]
    assert {"magnitude", "random", "wanda", "sparsegpt", "ria", "d-pruner"} <= set(weights)
    assert sorted(weights) == CRITERIA.names()
    for name in weights:
        criterion = CRITERIA.load(name)
        assert isinstance(criterion, Criterion)
        assert CRITERIA.get(name).config is METHODS.get(name).config
        assert set(criterion.ranking.statistics) <= {"norms"} and criterion.ranking.solve is None


@pytest.mark.parametrize("options, needle", [
    ({}, "exactly one of `score`"),
    ({"score": abs, "solve": abs}, "exactly one of `score`"),
    ({"score": abs, "group": "column"}, "Unknown group 'column'. Valid choices: row, layer"),
    ({"score": abs, "statistics": ("gradients",)}, "statistic 'gradients' is not an input statistic"),
    ({"score": abs, "statistics": ("hessian",)}, "set `ranked_by`"),
])
def test_a_malformed_criterion_is_refused_when_it_is_declared(options, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        Criterion(**options)


def test_ranking_falls_back_to_the_criterion_itself():
    assert WANDA.ranking is WANDA and MAGNITUDE.ranking is MAGNITUDE
    assert CRITERIA.load("random").ranking is MAGNITUDE
    assert CRITERIA.load("sparsegpt").ranking is WANDA and CRITERIA.load("d-pruner").ranking is WANDA
    assert Criterion(statistics=("hessian",), score=abs, ranked_by=WANDA).calibrated
    assert not MAGNITUDE.calibrated

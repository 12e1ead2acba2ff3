"""Shared fixtures: the packaged MiniLM, a tiny random Llama on the MiniLM tokenizer, test texts."""

from __future__ import annotations

import textwrap

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prunekit.context import LongCodeZipPruner, MiniLMScorer, SentencePruner, TokenPruner
from prunekit.context.encoder import load_minilm

PASSAGE = """The Amazon Rainforest

The Amazon rainforest covers much of the Amazon basin of South America. The basin spans about seven \
million square kilometres, of which roughly five and a half million are covered by forest. The region \
includes territory belonging to nine nations, and Brazil holds about sixty percent of it. Peru has the \
second largest share, followed by Colombia. The forest represents over half of the planet's remaining \
rainforests.

The rainforest likely formed during the Eocene era, after a global reduction of tropical temperatures. \
Scientists estimate that it has existed for at least fifty-five million years. During the last glacial \
period, the forest may have shrunk into isolated refugia separated by savanna. Pollen records from lake \
sediments, e.g. those in the Andean foothills, support this view.

The Amazon River is the largest river in the world by discharge volume. It carries about one fifth of \
all the fresh water that flows into the oceans. Dr. Emilio Goeldi, a Swiss naturalist, described many of \
its fish species in the late nineteenth century. Today the river supports a fishing industry worth \
several hundred million U.S. dollars a year.

Deforestation is the main threat to the ecosystem. Cattle ranching accounts for about 80 percent of \
cleared land. Soy farming, logging and road building add to the pressure. Satellite monitoring began in \
1988 and has tracked annual loss ever since. In 2004 the cleared area reached 27.8 thousand square \
kilometres, the highest value of that decade.
"""

OTHER_PASSAGE = """Sourdough bread is leavened by a culture of wild yeast and lactic acid bacteria. \
Bakers feed the starter with flour and water every day. A long, cool fermentation develops a sour flavour \
and an open crumb. The loaf is usually baked in a very hot oven, often inside a covered pot."""

QUERY = "How much of the cleared land is used for cattle ranching?"


@pytest.fixture(scope="session")
def minilm():
    return load_minilm()


@pytest.fixture(scope="session")
def tiny_lm(minilm):
    """A random 2-layer Llama sharing the MiniLM WordPiece vocabulary (mechanics only, no accuracy)."""
    _, tokenizer = minilm
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="session")
def sentence_pruner(minilm):
    return SentencePruner(MiniLMScorer(*minilm))


@pytest.fixture(scope="session")
def code_pruner(tiny_lm):
    return LongCodeZipPruner(*tiny_lm)


@pytest.fixture(scope="session")
def token_pruner(tiny_lm):
    return TokenPruner(*tiny_lm)


@pytest.fixture(scope="session")
def textwrap_source() -> str:
    with open(textwrap.__file__, encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="session")
def passage() -> str:
    return PASSAGE


@pytest.fixture(scope="session")
def other_passage() -> str:
    return OTHER_PASSAGE


@pytest.fixture(scope="session")
def query() -> str:
    return QUERY


@pytest.fixture(scope="session")
def pruners(sentence_pruner, code_pruner, token_pruner):
    return {"sentences": sentence_pruner, "code": code_pruner, "tokens": token_pruner}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""

import json

import pytest
import torch

from prunekit.data import calibration_windows, corpus_text, evaluation_windows, split_text
from prunekit.errors import ConfigError, PrunekitError
from prunekit.testing import CharTokenizer


def test_split_is_disjoint_and_at_a_paragraph_break():
    text = "\n\n".join(f"paragraph {i} " + "x" * 50 for i in range(100))
    head, tail = split_text(text)
    assert head + "\n\n" + tail == text
    assert tail.startswith("paragraph ")
    assert 0.88 < len(head) / len(text) < 0.92


@pytest.mark.parametrize("name", ["wiki", "news", "shakespeare", "python-stdlib"])
def test_named_corpora_are_clean_text(name):
    text = corpus_text(name)
    assert len(text.split()) > 50_000
    assert "[[" not in text[:100_000] and "{{" not in text[:100_000] if name == "wiki" else True
    head, tail = split_text(text)
    assert tail and tail not in head


def test_calibration_windows_are_seeded_and_from_the_first_part(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join("abcdefghij" * 20 for _ in range(50)))
    tok = CharTokenizer()
    a = calibration_windows(tok, str(path), samples=4, seq_len=16, seed=1)
    b = calibration_windows(tok, str(path), samples=4, seq_len=16, seed=1)
    c = calibration_windows(tok, str(path), samples=4, seq_len=16, seed=2)
    assert a.shape == (4, 16) and torch.equal(a, b) and not torch.equal(a, c)


def test_evaluation_windows_are_consecutive(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text("0123456789" * 1000)
    ids = evaluation_windows(CharTokenizer(), str(path), windows=3, seq_len=10)
    head, tail = split_text(path.read_text())
    expected = torch.tensor([b % 128 for b in tail.encode()][:30]).view(3, 10)
    assert torch.equal(ids, expected)
    with pytest.raises(ConfigError, match="fewer than the 999 requested"):
        evaluation_windows(CharTokenizer(), str(path), windows=999, seq_len=10)


def test_local_jsonl_and_bad_files(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "second"}) + "\n")
    assert corpus_text(str(good)) == "first\n\nsecond"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n')
    with pytest.raises(PrunekitError, match="line 1 has no string field 'text'"):
        corpus_text(str(bad))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(PrunekitError, match="not valid UTF-8"):
        corpus_text(str(latin))
    with pytest.raises(ConfigError, match="Unknown corpus 'wikki'"):
        corpus_text("wikki")


def test_a_calibration_mixture_draws_each_corpus_share_with_its_own_seed(tmp_path):
    from prunekit.data.splits import mixture_counts

    tok = CharTokenizer(256)
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n\n".join("a" * 300 for _ in range(40)))
    second.write_text("\n\n".join("b" * 300 for _ in range(40)))
    mixed = calibration_windows(tok, [str(first), str(second)], samples=5, seq_len=16, seed=3, weights=[3, 1])
    assert mixture_counts(5, [3, 1]) == [4, 1] and mixture_counts(6, [1, 1, 1]) == [2, 2, 2]
    assert mixture_counts(4, [1, 1, 1]) == [2, 1, 1] and mixture_counts(3, [0, 1]) == [0, 3]
    assert (mixed[:4] == ord("a")).float().mean() > 0.9 and (mixed[4] == ord("b")).float().mean() > 0.9
    assert torch.equal(mixed[4:], calibration_windows(tok, str(second), samples=1, seq_len=16, seed=4))
    alone = calibration_windows(tok, [str(first)], samples=3, seq_len=16, seed=3)
    assert torch.equal(alone, calibration_windows(tok, str(first), samples=3, seq_len=16, seed=3))


def test_a_recipe_takes_a_calibration_mixture_and_names_bad_entries():
    from prunekit.recipe import parse_recipe

    recipe = parse_recipe({"calibration": {"corpus": ["wiki", "python-stdlib"], "weights": [3, 1]}})
    assert recipe.calibration.corpus == ["wiki", "python-stdlib"] and recipe.calibration.weights == [3.0, 1.0]
    assert recipe.to_dict()["calibration"]["corpus"] == ["wiki", "python-stdlib"]
    with pytest.raises(PrunekitError, match=r"calibration.corpus\[1\]"):
        parse_recipe({"calibration": {"corpus": ["wiki", "no-such-corpus"]}})
    with pytest.raises(ConfigError, match="2 non-negative numbers"):
        parse_recipe({"calibration": {"corpus": ["wiki", "news"], "weights": [1]}})
    with pytest.raises(ConfigError, match="empty list"):
        parse_recipe({"calibration": {"corpus": []}})

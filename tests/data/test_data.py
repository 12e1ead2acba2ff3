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

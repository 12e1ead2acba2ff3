import subprocess
import sys

import pytest

TEXT = ("The Eiffel Tower is in Paris. It was built in 1889 for the World Fair. Bananas are yellow fruit grown "
        "in the tropics. The tower is 330 metres tall. Many tourists visit it every year. Cats sleep most of the day.")


def test_context_command_keeps_the_answer_and_reports_the_ratio(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    proc = subprocess.run([sys.executable, "-m", "prunekit.cli", "context", str(path), "--query",
                           "How tall is the Eiffel Tower?", "--rate", "0.5"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "330 metres" in proc.stdout and "Cats" not in proc.stdout
    assert "ratio 0.5" in proc.stderr


def test_context_command_errors(tmp_path):
    cli = [sys.executable, "-m", "prunekit.cli", "context"]
    proc = subprocess.run(cli + [str(tmp_path / "none.txt"), "--query", "q", "--rate", "0.5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run(cli + ["-", "--query", "q", "--rate", "0.5", "--method", "sentense"],
                          capture_output=True, text=True, input="")
    assert proc.returncode == 2 and "Did you mean 'sentences'" in proc.stderr
    proc = subprocess.run(cli + ["-", "--query", "q"], capture_output=True, text=True, input="x")
    assert proc.returncode == 2 and "exactly one of --budget" in proc.stderr


def test_context_command_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\u00e9 au lait is coffee with milk.".encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "prunekit.cli", "context", str(path), "--query", "what?",
                           "--rate", "0.5"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "text is not valid UTF-8 (byte 0xe9 at position 3)" in proc.stderr and proc.stdout == ""


def test_compress_context_api():
    from prunekit.api import compress_context
    from prunekit.context import Budget, SentencePruner

    result = compress_context("How tall is the Eiffel Tower?", TEXT, rate=0.5)
    assert "330 metres" in result.text and "Cats" not in result.text
    assert abs(result.ratio - 0.5) <= 0.02 and result.kept_tokens <= round(0.5 * result.original_tokens)
    pruner = SentencePruner()
    same = compress_context("How tall is the Eiffel Tower?", TEXT.encode(), rate=0.5, pruner=pruner)
    assert same == pruner.prune("How tall is the Eiffel Tower?", TEXT, Budget(rate=0.5)) == result
    with pytest.raises(ValueError):
        compress_context("q", TEXT, rate=0.5, tokens=10)

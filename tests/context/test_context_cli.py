import re
import subprocess
import sys
import time

import pytest

TEXT = ("The Eiffel Tower is in Paris. It was built in 1889 for the World Fair. Bananas are yellow fruit grown "
        "in the tropics. The tower is 330 metres tall. Many tourists visit it every year. Cats sleep most of the day.")


def test_context_command_keeps_the_answer_and_reports_the_ratio(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    proc = subprocess.run([sys.executable, "-m", "prunekit.cli", "context", str(path), "--query",
                           "How tall is the Eiffel Tower?", "--ratio", "0.5"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "330 metres" in proc.stdout and "Cats" not in proc.stdout
    removed = re.search(r"kept (\d+) of (\d+) tokens \(removed fraction (\d\.\d{3})\)", proc.stderr)
    assert removed and abs(float(removed[3]) - 0.5) <= 0.02 and "deprecated" not in proc.stderr


def test_context_command_old_rate_is_the_kept_fraction(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    cli = [sys.executable, "-m", "prunekit.cli", "context", str(path), "--query", "How tall is the Eiffel Tower?"]
    old = subprocess.run(cli + ["--rate", "0.4"], capture_output=True, text=True)
    new = subprocess.run(cli + ["--ratio", "0.6"], capture_output=True, text=True)
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert old.stdout == new.stdout and "330 metres" in new.stdout
    assert "--rate (kept fraction) is deprecated" in old.stderr and "--ratio 0.6" in old.stderr
    assert old.stderr.count("deprecated") == 1 and "deprecated" not in new.stderr
    assert old.stderr.splitlines()[-1] == new.stderr.splitlines()[-1]  # kept K of N tokens (removed fraction X)
    both = subprocess.run(cli + ["--rate", "0.4", "--ratio", "0.6"], capture_output=True, text=True)
    assert both.returncode == 2 and "exactly one of --budget N, --ratio R or --threshold T" in both.stderr


def test_context_command_errors(tmp_path):
    cli = [sys.executable, "-m", "prunekit.cli", "context"]
    proc = subprocess.run(cli + [str(tmp_path / "none.txt"), "--query", "q", "--ratio", "0.5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run(cli + ["-", "--query", "q", "--ratio", "0.5", "--method", "sentense"],
                          capture_output=True, text=True, input="")
    assert proc.returncode == 2 and "Did you mean 'sentences'" in proc.stderr
    proc = subprocess.run(cli + ["-", "--query", "q"], capture_output=True, text=True, input="x")
    assert proc.returncode == 2 and "exactly one of --budget N, --ratio R or --threshold T" in proc.stderr
    proc = subprocess.run(cli + ["-", "--query", "q", "--ratio", "1.0"], capture_output=True, text=True, input="x")
    assert proc.returncode == 2 and "ratio=1.0 is invalid" in proc.stderr


def test_context_command_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\u00e9 au lait is coffee with milk.".encode("latin-1"))
    cli = [sys.executable, "-m", "prunekit.cli", "context", str(path), "--query", "what?"]
    start = time.perf_counter()
    proc = subprocess.run(cli + ["--ratio", "0.5"], capture_output=True, text=True)
    assert proc.returncode == 2 and time.perf_counter() - start < 2.0  # refused before the encoder loads
    assert "text is not valid UTF-8 (byte 0xe9 at position 3)" in proc.stderr and proc.stdout == ""
    path.write_text("def f():\n    return 1\n")
    start = time.perf_counter()
    proc = subprocess.run(cli + ["--threshold", "0.5", "--method", "code"], capture_output=True, text=True)
    assert proc.returncode == 2 and time.perf_counter() - start < 2.0
    assert "code does not support budget mode 'threshold'. Valid choices: tokens, ratio" in proc.stderr


def test_compress_context_api():
    from prunekit.api import compress_context
    from prunekit.context import Budget, SentencePruner
    from prunekit.core.typed import RenamedOptionWarning

    result = compress_context("How tall is the Eiffel Tower?", TEXT, ratio=0.5)
    assert "330 metres" in result.text and "Cats" not in result.text
    assert abs(result.kept_fraction - 0.5) <= 0.02 and result.kept_tokens <= round(0.5 * result.original_tokens)
    pruner = SentencePruner()
    same = compress_context("How tall is the Eiffel Tower?", TEXT.encode(), ratio=0.5, pruner=pruner)
    assert same == pruner.prune("How tall is the Eiffel Tower?", TEXT, Budget(ratio=0.5)) == result
    with pytest.warns(RenamedOptionWarning, match="ratio"):
        old = compress_context("How tall is the Eiffel Tower?", TEXT, rate=0.3, pruner=pruner)
    assert old == compress_context("How tall is the Eiffel Tower?", TEXT, ratio=0.7, pruner=pruner)
    with pytest.raises(ValueError):
        compress_context("q", TEXT, ratio=0.5, tokens=10)
    with pytest.raises(ValueError, match="rate.*ratio"):
        compress_context("q", TEXT, ratio=0.5, rate=0.5)

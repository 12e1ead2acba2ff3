"""Benchmark one-shot weight pruning of SmolLM2-135M, optionally side by side with llm-compressor.

Same model file, same calibration windows (32 x 512 tokens, seeded, first 90% of the wiki corpus) and
the same evaluation windows (16 x 1024 tokens from the start of the last 10%) for every job. Each job
runs in its own process (clean peak-memory numbers); prunekit and peer jobs are interleaved.

  python bench/weight_pruning.py --suite issue3 [--peer-python /path/to/llmc/venv/bin/python]

Writes bench/results/weight_pruning-<suite>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITES = {
    "issue3": [
        ("ours", "dense", {}),
        ("ours", "magnitude", {"sparsity": 0.5}),
        ("ours", "wanda", {"sparsity": 0.5}),
        ("peer", "wanda", {"sparsity": 0.5}),
        ("ours", "sparsegpt", {"sparsity": 0.5}),
        ("peer", "sparsegpt", {"sparsity": 0.5}),
        ("ours", "wanda", {"sparsity": 0.7}),
        ("ours", "wanda", {"sparsity": 0.7, "allocation": "owl"}),
        ("ours", "magnitude", {"sparsity": 0.7}),
        ("ours", "magnitude", {"sparsity": 0.7, "allocation": "rd"}),
        ("ours", "wanda", {"sparsity": 0.7, "allocation": "rd"}),
        ("ours", "wanda", {"pattern": "2:4"}),
        ("ours", "sparsegpt", {"pattern": "2:4"}),
    ],
    "sidebyside": [
        ("ours", "wanda", {"sparsity": 0.5}),
        ("peer", "wanda", {"sparsity": 0.5}),
        ("ours", "sparsegpt", {"sparsity": 0.5}),
        ("peer", "sparsegpt", {"sparsity": 0.5}),
    ],
    "sidebyside-sparsegpt": [
        ("ours", "sparsegpt", {"sparsity": 0.5}),
        ("peer", "sparsegpt", {"sparsity": 0.5}),
    ],
    "sidebyside-sparsegpt-plain": [  # plain SparseGPT (no dense targets), as measured before they were the default
        ("ours", "sparsegpt", {"sparsity": 0.5, "dense_targets": 0.0}),
        ("peer", "sparsegpt", {"sparsity": 0.5}),
    ],
    "sparsegpt-targets": [  # the default (dense_targets 0.25) against plain SparseGPT and llm-compressor
        ("ours", "sparsegpt", {"sparsity": 0.5}),
        ("ours", "sparsegpt", {"sparsity": 0.5, "dense_targets": 0.0}),
        ("peer", "sparsegpt", {"sparsity": 0.5}),
        ("ours", "sparsegpt", {"pattern": "2:4"}),
        ("ours", "sparsegpt", {"pattern": "2:4", "dense_targets": 0.0}),
    ],
    "allocation": [
        ("ours", "magnitude", {"sparsity": 0.7, "allocation": "rd"}),
        ("ours", "wanda", {"sparsity": 0.7, "allocation": "rd"}),
        ("ours", "wanda", {"sparsity": 0.7, "allocation": "owl"}),
        ("peer", "wanda", {"sparsity": 0.7, "allocation": "owl"}),
    ],
    "calib": [
        ("ours", "wanda", {"sparsity": 0.5}),
        ("ours", "sparsegpt", {"sparsity": 0.5}),
    ],
    "quality": [
        ("ours", "sparsegpt", {"sparsity": 0.5, "damp": 0.001}),
        ("ours", "sparsegpt", {"sparsity": 0.5, "damp": 0.05}),
        ("ours", "sparsegpt", {"sparsity": 0.5, "damp": 0.1}),
    ],
}


def prepare(data_path: Path, samples: int, seq_len: int, seed: int = 0) -> str:
    import torch

    from prunekit.data import calibration_windows, evaluation_windows
    from prunekit.models import load

    loaded = load("smollm2-135m")
    if not data_path.exists():
        torch.save({"calibration": calibration_windows(loaded.tokenizer, "wiki", samples, seq_len, seed),
                    "evaluation": evaluation_windows(loaded.tokenizer, "wiki", 16, 1024)}, data_path)
    return loaded.source


def run_job(python: str, worker: str, model_dir: str, data: Path, method: str, options: dict) -> dict:
    cmd = [python, str(HERE / worker), "--model-dir", model_dir, "--data", str(data), "--method", method,
           "--options", json.dumps(options)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PRUNEKIT_QUIET="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"impl": worker, "method": method, "options": options, "error": proc.stderr[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="issue3")
    parser.add_argument("--peer-python", default=None, help="python of a venv with llmcompressor installed")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration windows (evaluation is fixed)")
    args = parser.parse_args()
    tag = f"{args.samples}x{args.seq_len}" + (f"-seed{args.seed}" if args.seed else "")
    data = HERE / "results" / f"data-{tag}.pt"
    data.parent.mkdir(exist_ok=True)
    model_dir = prepare(data, args.samples, args.seq_len, args.seed)
    rows = []
    for impl, method, options in SUITES[args.suite]:
        if impl == "peer" and not args.peer_python:
            continue
        python, worker = (args.peer_python, "_llmcompressor_worker.py") if impl == "peer" else \
            (sys.executable, "_ours_worker.py")
        row = run_job(python, worker, model_dir, data, method, options)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / f"weight_pruning-{args.suite}-{tag}.json"
    from prunekit.evaluate.records import write_record

    write_record(out, {"suite": args.suite, "seed": args.seed, "rows": rows})
    print("\n| impl | method | options | PPL | prune s | actual sparsity | peak RSS GB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['method']} | {json.dumps(r['options'])} | {r.get('perplexity', float('nan')):.2f} | "
              f"{r.get('prune_seconds', 0):.1f} | {r.get('actual_sparsity', 0):.4f} | {r.get('peak_rss_gb', 0):.2f} |")


if __name__ == "__main__":
    main()

"""Structured pruning of SmolLM2-135M: 30% of MLP width and of attention heads (GQA: whole KV heads with
their query groups), L2 group norm, uniform; prefill latency at 512 and 1024 tokens vs MACs.

One thread, dense and pruned forwards interleaved, medians. MACs come from prunekit's graph (all
Linear layers including the LM head over every position, plus QK^T and AV without causal savings).

  python bench/structured/llm.py [--repeats 5] [--ratio 0.3]
Writes bench/results/structured-llm.json.
"""

from __future__ import annotations

import argparse
import copy
from datetime import date
from pathlib import Path

import torch

from prunekit.evaluate.efficiency import interleaved_medians, macs_per_token
from prunekit.evaluate.records import write_record
from prunekit.graph import DependencyGraph
from prunekit.models import load
from prunekit.prune.structured import StructuredPruneConfig, prune_structured

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    torch.set_num_threads(1)
    dense = load("smollm2-135m")
    pruned = copy.copy(dense)
    pruned.model = copy.deepcopy(dense.model)
    pruned.adapter = type(dense.adapter)(pruned.model)
    config = StructuredPruneConfig(ratio=args.ratio, scope=["mlp", "heads"], round_to=args.round_to)
    report = prune_structured(pruned, config, method="l2")
    widths = {k: (v["before"], v["after"]) for k, v in report["layers"].items()}
    rows = []
    for length in args.lengths:
        ids = torch.randint(0, dense.model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
        def forward(model, ids=ids):
            def run():
                with torch.inference_mode():
                    model(input_ids=ids, use_cache=True)
            return run

        lat = interleaved_medians({"dense": forward(dense.model), "pruned": forward(pruned.model)}, args.repeats)
        full = {name: DependencyGraph.build(m.model, {"input_ids": ids}).estimate({})["macs"]
                for name, m in (("dense", dense), ("pruned", pruned))}
        rows.append({
            "tokens": length, "latency_ms": {k: v * 1000 for k, v in lat.items()},
            "macs": full,
            "evaluate_macs_per_token": {name: macs_per_token(m.model, m.adapter, length)["dense"]
                                        for name, m in (("dense", dense), ("pruned", pruned))},
            "macs_reduction": full["dense"] / full["pruned"], "speedup": lat["dense"] / lat["pruned"],
        })
        rows[-1]["speedup_over_macs_reduction"] = rows[-1]["speedup"] / rows[-1]["macs_reduction"]
    result = {"date": date.today().isoformat(), "torch": torch.__version__, "threads": 1, "ratio": args.ratio,
              "round_to": args.round_to, "params": [report["params_before"], report["params_after"]],
              "prune_seconds": report["graph_seconds"] + report["score_seconds"] + report["prune_seconds"],
              "widths_layer0": {k: v for k, v in widths.items() if ".layers.0." in k}, "rows": rows}
    write_record((HERE.parent / "results" / "structured-llm.json"), result)
    print(f"params {report['params_before'] / 1e6:.1f}M -> {report['params_after'] / 1e6:.1f}M, "
          f"prune {result['prune_seconds']:.2f}s, layer 0 {result['widths_layer0']}")
    for r in rows:
        print(f"{r['tokens']} tokens: MACs {r['macs']['dense'] / 1e9:.1f}G -> {r['macs']['pruned'] / 1e9:.1f}G "
              f"({r['macs_reduction']:.2f}x), prefill {r['latency_ms']['dense']:.0f} -> "
              f"{r['latency_ms']['pruned']:.0f} ms ({r['speedup']:.2f}x = {r['speedup_over_macs_reduction']:.2f} "
              f"of MACs)")


if __name__ == "__main__":
    main()

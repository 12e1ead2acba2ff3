"""DeepPrune on simulated parallel traces: token reduction and survival of a distinct minority cluster
(acceptance: >= 60% fewer generated tokens; the minority answer keeps its own cluster and votes).

``simulate_traces(k=16, agree=0.8, seed=s)`` for seeds 0..19: 13 majority traces (answer 42) and 3
minority traces (answer 17, distinct wording). Tokens are whitespace words (the runner's default
count). Reduction = 1 - generated / (every trace run to completion). "Minority survives" means a cluster
whose representative finished with the minority answer, holding exactly the 3 minority traces (no
minority trace absorbed by the majority, no majority trace in it), so majority voting still sees the
minority answer with weight 3; "correct minority" is the case where 17 is the right answer: DeepPrune
keeps it available (its full trace and votes) even though voting returns 42. Settings: the runner's
defaults (warm-up 128, check every 64) and the test settings (64 / 32), HeuristicJudge, tau 0.5.

  python bench/context/deepprune.py [--seeds 20]
Writes bench/results/context-deepprune.json.
"""

from __future__ import annotations

import argparse
import statistics

from _common import markdown_table, write_result

from prunekit.context import DeepPruneRunner, simulate_traces, trace_generators

SETTINGS = {"defaults (warm-up 128, check 64)": {}, "tests (warm-up 64, check 32)":
            {"warmup_tokens": 64, "check_every_tokens": 32}}


def run_seed(seed: int, options: dict) -> dict:
    traces = simulate_traces(k=16, agree=0.8, seed=seed)
    minority = {i for i, t in enumerate(traces) if t.group == "minority"}
    full = sum(len(t.text.split()) for t in traces)
    result = DeepPruneRunner(**options).run(trace_generators(traces))
    minority_clusters = [c for c in result.clusters if set(c) == minority]
    survives = bool(minority_clusters) and result.traces[minority_clusters[0][0]].finished \
        and result.votes.get("17") == len(minority)
    return {"seed": seed, "full_tokens": full, "generated_tokens": result.generated_tokens,
            "reduction": 1 - result.generated_tokens / full, "answer": result.answer, "votes": result.votes,
            "clusters": len(result.clusters), "judge_calls": result.judge_calls,
            "minority_cluster_survives": survives, "pure_clusters": all(
                len({traces[i].group for i in c}) == 1 for c in result.clusters)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    summary, details = [], {}
    for name, options in SETTINGS.items():
        runs = [run_seed(seed, options) for seed in range(args.seeds)]
        reductions = [r["reduction"] for r in runs]
        details[name] = runs
        summary.append({
            "setting": name, "seeds": args.seeds, "mean_reduction": statistics.mean(reductions),
            "min_reduction": min(reductions), "majority_answer": sum(r["answer"] == "42" for r in runs) / len(runs),
            "minority_survives": sum(r["minority_cluster_survives"] for r in runs) / len(runs),
            "pure_clusters": sum(r["pure_clusters"] for r in runs) / len(runs),
            "mean_clusters": statistics.mean(r["clusters"] for r in runs),
            "mean_judge_calls": statistics.mean(r["judge_calls"] for r in runs)})
    table = markdown_table(
        ["setting", "seeds", "mean token reduction", "min reduction", "answer 42", "minority cluster survives",
         "pure clusters", "mean clusters", "judge calls"],
        [[s["setting"], s["seeds"], s["mean_reduction"], s["min_reduction"], s["majority_answer"],
          s["minority_survives"], s["pure_clusters"], f"{s['mean_clusters']:.1f}", f"{s['mean_judge_calls']:.0f}"]
         for s in summary])
    print(table)
    path = write_result("deepprune", {"k": 16, "agree": 0.8, "summary": summary, "runs": details, "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""One prunekit pruning job on prepared data; prints one JSON line. Run by bench/weight_pruning.py."""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--options", default="{}", help="JSON options of the method")
    parser.add_argument("--samples", type=int, default=None, help="use the first N calibration windows")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from prunekit.core.typed import from_dict
    from prunekit.evaluate.perplexity import perplexity_of_windows
    from prunekit.methods import METHODS
    from prunekit.models import load
    from prunekit.prune.inputs import PruneInputs

    data = torch.load(args.data)
    calibration = data["calibration"][: args.samples] if args.samples else data["calibration"]
    loaded = load(args.model_dir)

    inputs = PruneInputs(calibration=lambda _tokenizer: calibration, seed=0)  # the windows the peer gets

    result = {"impl": "prunekit", "method": args.method, "options": json.loads(args.options)}
    if args.method != "dense":
        config = from_dict(METHODS.get(args.method).config, json.loads(args.options), args.method)
        start = time.perf_counter()
        details = METHODS.load(args.method)(loaded, config, inputs, method=args.method)
        result["prune_seconds"] = time.perf_counter() - start
        result["actual_sparsity"] = details["actual_sparsity"]
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    result["model_gb"] = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) / 1e9
    result["perplexity"] = perplexity_of_windows(loaded.model, data["evaluation"])
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

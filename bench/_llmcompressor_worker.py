"""One llm-compressor pruning job on the same prepared data (runs in llm-compressor's own venv).

Only llm-compressor, transformers and torch are imported here; the evaluation mirrors
prunekit.evaluate.perplexity (independent windows, every token after the first predicted).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import torch


def perplexity(model, ids: torch.Tensor) -> float:
    nll, count = 0.0, 0
    with torch.inference_mode():
        for row in ids:
            logits = model(input_ids=row[None], use_cache=False).logits
            nll += torch.nn.functional.cross_entropy(logits[0, :-1].float(), row[1:], reduction="sum").item()
            count += row.numel() - 1
    return math.exp(nll / count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", required=True, choices=["wanda", "sparsegpt"])
    parser.add_argument("--options", default="{}")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from transformers import AutoModelForCausalLM

    data = torch.load(args.data)
    calibration = data["calibration"]
    options = json.loads(args.options)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    dataset = Dataset.from_dict({"input_ids": calibration.tolist(),
                                 "attention_mask": torch.ones_like(calibration).tolist()})
    sparsity = options.get("sparsity", 0.5)
    pattern = options.get("pattern", "unstructured")
    kwargs = {"sparsity": sparsity, "targets": ["Linear"], "ignore": ["re:.*lm_head"],
              "mask_structure": "0:0" if pattern == "unstructured" else pattern}
    if options.get("allocation") == "owl":
        kwargs.update(sparsity_profile="owl", owl_m=5, owl_lmbda=0.08)
    modifier = (WandaPruningModifier(**kwargs) if args.method == "wanda"
                else SparseGPTModifier(dampening_frac=options.get("damp", 0.01), **kwargs))
    start = time.perf_counter()
    oneshot(model=model, dataset=dataset, recipe=[modifier], num_calibration_samples=calibration.shape[0],
            max_seq_length=calibration.shape[1], pipeline="sequential", shuffle_calibration_samples=False)
    seconds = time.perf_counter() - start
    weights = [m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n]
    zeros = sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)
    result = {"impl": "llmcompressor", "method": args.method, "options": options, "prune_seconds": seconds,
              "actual_sparsity": zeros, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
              "perplexity": perplexity(model, data["evaluation"])}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

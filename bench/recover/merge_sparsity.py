"""Sparsity after merging LoRA into a pruned SmolLM2-135M: plain peft LoRA merged as W + B A against prunekit's
masked update W + M * (B A), each after the same short LoRA training (issue 13's mask acceptance item).

  python bench/recover/merge_sparsity.py [--base sgpt24] [--tokens 8192]
Writes bench/results/recover-merge-sparsity-<base>.json.
"""

from __future__ import annotations

import argparse

import _common as common
import torch


def sparsity(model) -> tuple[float, bool]:
    """(share of zero weights in the blocks' Linear layers, whether every group of 4 has at most 2 non-zeros)."""
    zeros = total = 0
    nm = True
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            w = module.weight
            zeros += int((w == 0).sum())
            total += w.numel()
            nm &= bool((w.reshape(-1, 4) != 0).sum(1).le(2).all())
    return zeros / total, nm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="sgpt24", choices=list(common.BASES))
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from prunekit.models import load
    from prunekit.recover import RecoverConfig
    from prunekit.recover.run import recover

    dense = load("smollm2-135m")
    base = common.pruned_base(dense, args.base)
    result = {"base": args.base, "tokens": args.tokens, "before": sparsity(base.model)}
    # the same LoRA training twice: prunekit's masked update, and plain peft LoRA (no layer treated as sparse,
    # mask_min_sparsity 1.0) merged the usual way, W + B A
    for name, min_sparsity in (("masked", 0.01), ("plain_peft", 1.0)):
        loaded = common.fresh_copy(base)
        config = RecoverConfig(tokens=args.tokens, lr=1e-3, report_windows=0, eval_windows=1, checkpoint_every=0,
                               mask_min_sparsity=min_sparsity)
        recover(loaded, config)
        result[name] = sparsity(loaded.model)
        result[f"{name}_wiki_ppl"] = common.perplexities(loaded, {"wiki": 16})["wiki"]
    common.write_result(f"merge-sparsity-{args.base}", result)
    print(result)


if __name__ == "__main__":
    main()

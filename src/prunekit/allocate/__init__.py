"""Per-layer sparsity allocation: how much to prune in each layer."""

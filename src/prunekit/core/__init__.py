"""Base vocabulary every layer may use: typed option coercion (typed.py), sparsity masks and N:M patterns
(patterns.py), peak memory (memory.py). Imports nothing of prunekit but errors."""

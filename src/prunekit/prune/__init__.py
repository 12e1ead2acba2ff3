"""Pruning masks and weight-reconstruction solvers (pure tensor maths)."""

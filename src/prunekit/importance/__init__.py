"""Per-weight importance scores (higher means keep)."""

"""prunekit: make PyTorch models smaller and faster by pruning, with honest measurements."""

__version__ = "0.1.0"

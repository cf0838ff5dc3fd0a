"""moviegen: an open PyTorch implementation of Meta's Movie Gen (arXiv 2410.13720)."""

__version__ = "0.1.0"

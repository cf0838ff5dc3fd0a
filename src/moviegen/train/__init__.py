"""Training: the TAE trainer, the transformer loop, parallelism and checkpointing."""

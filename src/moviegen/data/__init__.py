"""Data: video clip sampling, the built-in world, caches and buckets."""

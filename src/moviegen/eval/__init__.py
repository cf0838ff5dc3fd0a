"""Evaluation: reconstruction quality, automatic metrics, benchmarks and human evaluation."""

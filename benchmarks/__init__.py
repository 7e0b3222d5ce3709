"""Benchmarks of the fcloop training step (run as modules: `python -m benchmarks.throughput`)."""

"""Training: the loop, checkpoints and their fingerprints, metrics, processes."""

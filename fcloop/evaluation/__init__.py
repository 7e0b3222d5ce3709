"""Evaluation: generation, parsing and scoring tool calls, BFCL."""

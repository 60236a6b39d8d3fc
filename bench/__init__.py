"""Benchmarks (`make bench`): each module's run() prints its table with ratios to a baseline."""

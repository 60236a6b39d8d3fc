"""The evaluate stage's core: one model's windows, detectors, policy and dedup, as restorable data."""

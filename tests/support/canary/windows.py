"""Per-version windows as the agent builds them, for the canary tests that go through the detectors."""

from __future__ import annotations

import numpy as np

from detectors import window as window_mod


def make_window(
    rng: np.random.Generator,
    size: int,
    *,
    version: str,
    error_rate: float = 0.01,
    gpu_slowdown: float = 1.0,
    feature_shift: float = 0.0,
    accuracy: float | None = None,
    at: float | None = None,
) -> window_mod.Window:
    """One version's window; with ``accuracy``, label-joined (predictions right that often);
    with ``at``, its records are stamped from then on (the canary feed keeps only windows served
    after the step's traffic was)."""
    gpu = rng.lognormal(np.log(8.0), 0.3, size) * gpu_slowdown
    truth = rng.integers(0, 2, size).astype(np.float64)
    labels = predictions = None
    if accuracy is not None:
        right = rng.random(size) < accuracy
        predictions = np.where(right, truth, 1.0 - truth)
        labels = truth
    return window_mod.Window(
        features={"amount": rng.normal(feature_shift, 1.0, size), "age": rng.normal(40.0, 10.0, size)},
        predictions=predictions,
        labels=labels,
        gpu_latency_ms=gpu,
        latency_ms=gpu + rng.lognormal(np.log(5.0), 0.5, size),
        errors=(rng.random(size) < error_rate).astype(np.float64),
        timestamps=None if at is None else at + np.arange(size, dtype=np.float64) * 1e-3,
        model_version=version,
    )

"""Small seeded problems for the retrain tests (a few hundred rows: fast on a busy CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np

from actions.retrain import config, dataset

FAST_TRAINER = config.TrainerSettings(hidden_sizes=[16], epochs=15, batch_size=64, seed=7)


def binary(
    rows: int = 400, *, seed: int = 0, start: float = 1_700_000_000.0, id_prefix: str = "r"
) -> dataset.TrainingSet:
    """label = x1 + 0.8 x2 + [colour == a] > 0.3 (plus noise); the serving model used x1 alone.

    ``served_predictions`` / ``served_scores`` are that weaker model's answers, so a retrained
    candidate that learns x2 and colour beats it.
    """
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(np.array(["a", "b", "c"], dtype=object), size=rows)
    signal = x1 + 0.8 * x2 + (colour == "a") + rng.normal(scale=0.3, size=rows)
    labels = (signal > 0.3).astype(np.float64)
    served_scores = 1.0 / (1.0 + np.exp(-2.0 * x1))
    return dataset.TrainingSet(
        features={"x1": x1, "x2": x2, "colour": colour},
        labels=labels,
        request_ids=np.array([f"{id_prefix}{seed}-{i}" for i in range(rows)], dtype=object),
        timestamps=start + np.arange(rows, dtype=np.float64),
        segments={"region": np.array(["eu" if i % 2 else "us" for i in range(rows)], dtype=object)},
        served_predictions=(served_scores > 0.5).astype(np.float64),
        served_scores=served_scores,
    )


def served_errors_rising_at(data: dataset.TrainingSet, row: int, *, seed: int = 5) -> dataset.TrainingSet:
    """``data`` with served answers wrong 5 % of the time before ``row`` and 40 % from there on."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(data.size) < np.where(np.arange(data.size) < row, 0.05, 0.4)
    served = np.where(wrong, 1.0 - data.labels, data.labels)
    return dataclasses.replace(data, served_predictions=served)


def regression(rows: int = 300, *, seed: int = 0) -> dataset.TrainingSet:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    target = 3.0 * x1 - 2.0 * x2 + rng.normal(scale=0.1, size=rows)
    return dataset.TrainingSet(
        features={"x1": x1, "x2": x2},
        labels=target,
        request_ids=np.array([f"g{seed}-{i}" for i in range(rows)], dtype=object),
        timestamps=np.arange(rows, dtype=np.float64),
    )


def multiclass(rows: int = 300, *, seed: int = 0) -> dataset.TrainingSet:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    labels = np.where(x1 > 0.5, "high", np.where(x2 > 0, "mid", "low")).astype(object)
    return dataset.TrainingSet(
        features={"x1": x1, "x2": x2},
        labels=labels,
        request_ids=np.array([f"m{seed}-{i}" for i in range(rows)], dtype=object),
        timestamps=np.arange(rows, dtype=np.float64),
    )

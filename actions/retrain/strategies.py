"""Which rows a retrain learns from, and which it is judged on.

The held-out window is always the newest ``holdout_fraction`` of the recent joined rows (by event
time): the gates judge candidate and serving model on the traffic that drifted, and no
candidate ever trains on it. The rest is chosen by the strategy:

- ``full``: the reference training data (when given) plus every recent row, newest
  ``max_rows`` kept (the reference counts as the oldest).
- ``sliding``: only recent rows, the newest ``window_records`` and, when ``window_s`` is set,
  only those at most ``window_s`` seconds older than the newest row.
- ``incremental``: the sliding selection, trained from the serving model's weights for
  ``trainer.incremental_epochs`` (needs a serving model in the built-in format).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from actions.retrain import config, dataset


class StrategyError(ValueError):
    """Not enough (or unusable) data for the configured strategy."""


@dataclasses.dataclass(frozen=True)
class Plan:
    strategy: config.StrategyKind
    train: dataset.TrainingSet
    holdout: dataset.TrainingSet
    warm_start: bool


def split_holdout(
    recent: dataset.TrainingSet, fraction: float
) -> tuple[dataset.TrainingSet, dataset.TrainingSet]:
    """(older rows, newest ``fraction``), each in event-time order (arrival order breaks ties)."""
    order = np.argsort(recent.timestamps, kind="stable")
    held = max(1, round(recent.size * fraction))
    return recent.take(order[:-held]), recent.take(order[-held:])


def plan(
    settings: config.StrategySettings,
    recent: dataset.TrainingSet,
    reference: dataset.TrainingSet | None = None,
) -> Plan:
    if recent.size < 2:
        raise StrategyError(
            f"{recent.size} recent labelled row(s): a retrain needs labels joined to predictions"
        )
    older, holdout = split_holdout(recent, settings.holdout_fraction)
    if settings.kind is config.StrategyKind.FULL:
        parts = [reference, older] if reference is not None and reference.size else [older]
        combined = dataset.concat(parts)
        train = combined.take(np.arange(max(0, combined.size - settings.max_rows), combined.size))
    else:
        train = _recent_window(older, settings)
    if train.size < settings.min_train_rows:
        raise StrategyError(
            f"strategy {settings.kind.value} selected {train.size} training rows, fewer than "
            f"retrain.strategy.min_train_rows={settings.min_train_rows}; wait for more labelled traffic, "
            "widen the window, or add reference data"
        )
    return Plan(settings.kind, train, holdout, warm_start=settings.kind is config.StrategyKind.INCREMENTAL)


def _recent_window(rows: dataset.TrainingSet, settings: config.StrategySettings) -> dataset.TrainingSet:
    start = max(0, rows.size - settings.window_records)
    index = np.arange(start, rows.size)
    if settings.window_s is not None and rows.size:
        newest = float(rows.timestamps.max())
        index = index[rows.timestamps[index] >= newest - settings.window_s]
    return rows.take(index)

"""Which rows a retrain learns from, and which it is judged on.

The held-out window is always the newest ``holdout_fraction`` of the recent joined rows (by event
time): the gates judge candidate and serving model on the traffic that drifted, and no
candidate ever trains on it. The rest is chosen by the strategy:

- ``full``: the reference training data (when given) plus every recent row, newest
  ``max_rows`` kept (the reference counts as the oldest).
- ``sliding``: only recent rows, the newest ``window_records`` and, when ``window_s`` is set,
  only those at most ``window_s`` seconds older than the newest row; with ``from_change``, only
  those after the point where the serving model's errors rose (``change_point``), if they did.
- ``incremental``: the sliding selection, trained from the serving model's weights for
  ``trainer.incremental_epochs`` (needs a serving model in the built-in format).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from actions.retrain import change_point, config, dataset


class StrategyError(ValueError):
    """Not enough (or unusable) data for the configured strategy."""


@dataclasses.dataclass(frozen=True)
class Plan:
    strategy: config.StrategyKind
    train: dataset.TrainingSet
    holdout: dataset.TrainingSet
    warm_start: bool
    # Event time of the first row after the change the serving model's errors show, when the
    # training rows start there.
    changed_at: float | None = None


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
        changed_at = None
    else:
        train = _recent_window(older, settings)
        train, changed_at = _since_change(train, settings) if settings.from_change else (train, None)
    if train.size < settings.min_train_rows:
        raise StrategyError(
            f"strategy {settings.kind.value} selected {train.size} training rows, fewer than "
            f"retrain.strategy.min_train_rows={settings.min_train_rows}; wait for more labelled traffic, "
            "widen the window, or add reference data"
        )
    return Plan(
        settings.kind,
        train,
        holdout,
        warm_start=settings.kind is config.StrategyKind.INCREMENTAL,
        changed_at=changed_at,
    )


def _recent_window(rows: dataset.TrainingSet, settings: config.StrategySettings) -> dataset.TrainingSet:
    start = max(0, rows.size - settings.window_records)
    index = np.arange(start, rows.size)
    if settings.window_s is not None and rows.size:
        newest = float(rows.timestamps.max())
        index = index[rows.timestamps[index] >= newest - settings.window_s]
    return rows.take(index)


def _since_change(
    rows: dataset.TrainingSet, settings: config.StrategySettings
) -> tuple[dataset.TrainingSet, float | None]:
    """The rows after the serving model's errors rose (at least ``min_train_rows``), or all of them."""
    errors = change_point.served_errors(rows)
    if errors is None:
        return rows, None
    start = change_point.change_start(errors, min_side=max(settings.min_train_rows // 2, 30))
    if start is None:
        return rows, None
    start = max(0, min(start, rows.size - settings.min_train_rows))
    kept = rows.take(np.arange(start, rows.size))
    return kept, float(kept.timestamps.min())

"""Strategies: the newest rows are held out; each strategy picks its training rows from the rest."""

from __future__ import annotations

import numpy as np
import pytest

from actions.retrain import config, dataset, strategies
from tests.support.retrain import samples


def shuffled(rows: int, seed: int = 0) -> dataset.TrainingSet:
    data = samples.binary(rows, seed=seed)
    return data.take(np.random.default_rng(3).permutation(rows))


def test_holdout_is_the_newest_fraction_whatever_the_arrival_order() -> None:
    data = shuffled(100)
    older, held = strategies.split_holdout(data, 0.2)
    assert held.size == 20 and older.size == 80
    assert held.timestamps.min() > older.timestamps.max()
    assert np.all(np.diff(older.timestamps) >= 0)


def test_full_keeps_reference_and_history_newest_first_within_the_bound() -> None:
    recent = samples.binary(100, seed=1, start=2_000_000_000.0)
    reference = samples.binary(100, seed=2, start=1_000_000_000.0, id_prefix="ref")
    settings = config.StrategySettings(kind="full", holdout_fraction=0.2, max_rows=150, min_train_rows=10)
    plan = strategies.plan(settings, recent, reference)
    assert plan.train.size == 150 and plan.holdout.size == 20 and not plan.warm_start
    ids = set(plan.train.request_ids.tolist())
    # All 80 older recent rows stay; the oldest 30 reference rows fall off first.
    assert {f"r1-{i}" for i in range(80)} <= ids
    assert sum(1 for i in ids if i.startswith("ref")) == 70 and "ref2-0" not in ids


def test_sliding_takes_the_newest_records_and_respects_the_time_bound() -> None:
    recent = samples.binary(200)
    by_count = strategies.plan(
        config.StrategySettings(kind="sliding", window_records=50, min_train_rows=10), recent
    )
    assert by_count.train.size == 50
    assert by_count.train.timestamps.max() < by_count.holdout.timestamps.min()
    assert by_count.train.timestamps.min() == recent.timestamps[160 - 50]
    by_time = strategies.plan(
        config.StrategySettings(kind="sliding", window_records=1000, window_s=29.0, min_train_rows=10), recent
    )
    assert by_time.train.size == 30
    assert by_time.train.timestamps.max() - by_time.train.timestamps.min() == 29.0


def test_incremental_asks_for_a_warm_start_on_recent_rows_only() -> None:
    plan = strategies.plan(
        config.StrategySettings(kind="incremental", window_records=40, min_train_rows=10),
        samples.binary(100),
        samples.binary(500, seed=9, id_prefix="ref"),
    )
    assert plan.warm_start and plan.train.size == 40
    assert not any(str(i).startswith("ref") for i in plan.train.request_ids)


def test_too_few_rows_says_what_to_do() -> None:
    with pytest.raises(strategies.StrategyError, match=r"fewer than retrain\.strategy\.min_train_rows=100"):
        strategies.plan(config.StrategySettings(), samples.binary(60))
    with pytest.raises(strategies.StrategyError, match="labels joined to predictions"):
        strategies.plan(config.StrategySettings(), samples.binary(1))

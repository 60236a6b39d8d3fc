"""The retrain's start: where the serving model's errors rose among the recent rows."""

from __future__ import annotations

import dataclasses

import numpy as np

from actions.retrain import change_point, config, strategies
from tests.support.retrain import samples


def bernoulli(rates_and_sizes: list[tuple[float, int]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([(rng.random(size) < rate).astype(np.float64) for rate, size in rates_and_sizes])


def test_a_rise_in_the_error_rate_is_found_near_where_it_happened() -> None:
    starts = [
        change_point.change_start(bernoulli([(0.1, 2000), (0.25, 1000)], seed), 50) for seed in range(20)
    ]
    assert all(start is not None and abs(start - 2000) <= 150 for start in starts), starts


def test_a_stationary_error_rate_shows_no_change_in_almost_every_stream() -> None:
    found = sum(
        change_point.change_start(bernoulli([(0.2, 3000)], seed), 50) is not None for seed in range(300)
    )
    assert found <= 3  # measured: 0 of 300


def test_a_fall_in_the_error_rate_is_not_a_reason_to_drop_rows() -> None:
    assert change_point.change_start(bernoulli([(0.3, 1500), (0.05, 1500)], 1), 50) is None


def test_unknown_errors_move_no_split_and_short_streams_have_none() -> None:
    errors = bernoulli([(0.1, 1000), (0.4, 500)], 2)
    errors[::7] = np.nan
    start = change_point.change_start(errors, 50)
    assert start is not None and abs(start - 1000) <= 100
    assert change_point.change_start(errors[:80], 50) is None
    assert change_point.change_start(np.zeros(500), 50) is None  # no spread: nothing to split


def test_served_errors_for_classes_labels_as_text_and_regression() -> None:
    binary = samples.binary(200)
    errors = change_point.served_errors(binary)
    assert errors is not None and set(np.unique(errors)) <= {0.0, 1.0}
    assert errors.sum() == np.sum(binary.served_predictions != binary.labels)
    text = dataclasses.replace(
        binary,
        labels=np.where(binary.labels > 0, "yes", "no").astype(object),
        served_predictions=np.array(["yes", None, "no"] * 66 + ["yes", "no"], dtype=object),
    )
    text_errors = change_point.served_errors(text)
    assert text_errors is not None and np.isnan(text_errors[1]) and not np.isnan(text_errors[0])
    regression = samples.regression(50)
    assert change_point.served_errors(regression) is None  # no served answers recorded
    answered = dataclasses.replace(regression, served_predictions=regression.labels + 0.5)
    assert np.allclose(change_point.served_errors(answered), 0.5)  # type: ignore[arg-type]


def test_sliding_trains_from_the_change_unless_told_not_to() -> None:
    data = samples.served_errors_rising_at(samples.binary(3000, seed=4), 1500)
    settings = config.StrategySettings(kind="sliding", holdout_fraction=0.2, min_train_rows=100)
    plan = strategies.plan(settings, data)
    assert plan.changed_at is not None and abs(plan.changed_at - data.timestamps[1500]) <= 100
    assert plan.train.timestamps.min() == plan.changed_at and plan.train.size < 2400 - 1300
    whole = strategies.plan(settings.model_copy(update={"from_change": False}), data)
    assert whole.changed_at is None and whole.train.size == 2400


def test_a_change_too_close_to_the_end_still_leaves_min_train_rows() -> None:
    data = samples.served_errors_rising_at(samples.binary(3000, seed=4), 2300)
    settings = config.StrategySettings(kind="sliding", holdout_fraction=0.2, min_train_rows=400)
    plan = strategies.plan(settings, data)
    assert plan.changed_at is not None and plan.train.size == 400

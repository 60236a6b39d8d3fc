"""Checks every detector in default_registry() must pass (River's checks/, generated per class).

Each class says how to exercise it through ``conformance_example(rng)`` (see
``detectors.base.ConformanceExample``): a config, a reference (or None) and a stationary stream.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import msgspec
import numpy as np
import pytest
from scipy import stats

from detectors import base, registry

REGISTRY = registry.default_registry()
CLASSES = REGISTRY.classes()
WINDOWS = 4
# False-alarm check: independent trials, each a fresh detector and reference from its own seed.
FALSE_ALARM_TRIALS = 240
# A detector that keeps state between windows is judged at window 1, 2 or 3 of its stream.
WINDOW_POSITIONS = 3
# Chance that a detector keeping its promise fails the check on a random choice of seeds.
WRONG_FAILURE_PROBABILITY = 1e-3


def _build(cls: type[base.Detector[Any]], seed: int) -> tuple[base.Detector[Any], base.ConformanceExample]:
    example = cls.conformance_example(np.random.default_rng(seed))
    detector = REGISTRY.create(cls.name, example.config)
    if example.reference is not None:
        assert isinstance(detector, base.NeedsReference), f"{cls.name} got a reference but cannot take one"
        detector.set_reference(example.reference)
    return detector, example


def _stream(example: base.ConformanceExample, seed: int, count: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [example.make_window(rng) for _ in range(count)]


def _run(detector: base.Detector[Any], windows: list[Any]) -> list[dict[str, Any]]:
    return [_comparable(detector.update(w).to_json()) for w in windows]


def _comparable(value: Any) -> Any:
    """NaN != NaN would fail equality on identical results; compare it as a marker."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.fixture(params=CLASSES, ids=[c.name for c in CLASSES])
def detector_class(request: pytest.FixtureRequest) -> type[base.Detector[Any]]:
    cls: type[base.Detector[Any]] = request.param
    return cls


def test_registry_lists_the_data_and_prediction_drift_detectors() -> None:
    assert {"data_drift", "prediction_drift"} <= set(REGISTRY.names())


def test_class_declares_its_contract(detector_class: type[base.Detector[Any]]) -> None:
    assert REGISTRY.get(detector_class.name) is detector_class
    assert isinstance(detector_class.family, base.DetectorFamily)
    assert issubclass(detector_class.config_class, base.DetectorConfig)
    example = detector_class.conformance_example(np.random.default_rng(0))
    assert 0 < example.false_alarm_rate < 1


def test_same_seed_same_results(detector_class: type[base.Detector[Any]]) -> None:
    first, example = _build(detector_class, 3)
    second, _ = _build(detector_class, 3)
    windows = _stream(example, 30, WINDOWS)
    assert _run(first, windows) == _run(second, windows)


def test_results_name_the_detector_and_family(detector_class: type[base.Detector[Any]]) -> None:
    detector, example = _build(detector_class, 4)
    result = detector.update(_stream(example, 40, 1)[0])
    assert result.detector == detector_class.name
    assert result.family == detector_class.family
    assert isinstance(result.drifted, bool)


def test_reset_equals_a_fresh_detector(detector_class: type[base.Detector[Any]]) -> None:
    used, example = _build(detector_class, 5)
    _run(used, _stream(example, 50, WINDOWS))
    used.reset()
    fresh, _ = _build(detector_class, 5)
    windows = _stream(example, 51, WINDOWS)
    assert _run(used, windows) == _run(fresh, windows)


def test_pickle_round_trip_continues_identically(detector_class: type[base.Detector[Any]]) -> None:
    detector, example = _build(detector_class, 6)
    _run(detector, _stream(example, 60, WINDOWS))
    restored = pickle.loads(pickle.dumps(detector))
    windows = _stream(example, 61, WINDOWS)
    assert _run(restored, windows) == _run(detector, windows)


def test_state_as_data_continues_identically_in_another_detector(
    detector_class: type[base.Detector[Any]],
) -> None:
    """What ``state()`` returns survives msgpack (the agent's state topic) and ``load_state`` into a
    fresh detector, with the same config and reference, continues exactly as the original does."""
    detector, example = _build(detector_class, 8)
    _run(detector, _stream(example, 80, WINDOWS))
    fresh, _ = _build(detector_class, 8)
    fresh.load_state(msgspec.msgpack.decode(msgspec.msgpack.encode(detector.state())))
    windows = _stream(example, 81, WINDOWS)
    assert _run(fresh, windows) == _run(detector, windows)


def test_state_is_empty_exactly_for_detectors_that_learn_nothing_between_windows(
    detector_class: type[base.Detector[Any]],
) -> None:
    detector, example = _build(detector_class, 9)
    detector.update(_stream(example, 90, 1)[0])
    assert bool(detector.state()) == _keeps_state_between_windows(detector_class)


def _keeps_state_between_windows(detector_class: type[base.Detector[Any]]) -> bool:
    """True when a window changes the detector's checkpoint (its pickle), as ADWIN's window does."""
    detector, example = _build(detector_class, 7)
    before = pickle.dumps(detector)
    detector.update(_stream(example, 70, 1)[0])
    return pickle.dumps(detector) != before


def test_false_alarm_rate_on_stationary_streams(detector_class: type[base.Detector[Any]]) -> None:
    """Alarms on stationary windows stay within the promised rate, by an exact binomial bound.

    Each trial builds a fresh detector and reference from its own seed and counts one window, so
    trials are independent (windows sharing a reference are not: an unlucky reference makes them
    alarm together). A detector that keeps state is judged at window 1, 2 or 3 of its stream in
    turn, so the promise is the mean rate over those positions. Independent trials with mean rate
    p <= promised: by Hoeffding (1956, theorem 4) the alarm count's upper tail beyond the mean is
    at most Binomial(trials, promised)'s, so a detector keeping its promise fails this check with
    probability at most WRONG_FAILURE_PROBABILITY over the choice of seeds (and the seeds are
    fixed: the outcome is deterministic). At a promised 0.05 a detector alarming at twice the rate
    fails with probability 0.45, at 2.5 times 0.86.
    """
    positions = WINDOW_POSITIONS if _keeps_state_between_windows(detector_class) else 1
    alarms = 0
    rate = 0.0
    for trial in range(FALSE_ALARM_TRIALS):
        detector, example = _build(detector_class, 1000 + trial)
        rate = example.false_alarm_rate
        windows = _stream(example, 5000 + trial, 1 + trial % positions)
        for warm_up in windows[:-1]:
            detector.update(warm_up)
        alarms += detector.update(windows[-1]).drifted
    # P(alarms > limit) <= WRONG_FAILURE_PROBABILITY for Binomial(trials, rate).
    limit = int(stats.binom.isf(WRONG_FAILURE_PROBABILITY, FALSE_ALARM_TRIALS, rate))
    assert alarms <= limit, (
        f"{alarms}/{FALSE_ALARM_TRIALS} stationary windows alarmed; promised rate {rate}, "
        f"so at most {limit} (binomial, 1 - {WRONG_FAILURE_PROBABILITY} quantile)"
    )

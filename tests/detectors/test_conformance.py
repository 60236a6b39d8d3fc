"""Checks every detector in default_registry() must pass (River's checks/, generated per class).

Each class says how to exercise it through ``conformance_example(rng)`` (see
``detectors.base.ConformanceExample``): a config, a reference (or None) and a stationary stream.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest

from detectors import base, registry

REGISTRY = registry.default_registry()
CLASSES = REGISTRY.classes()
WINDOWS = 4
FALSE_ALARM_SEEDS = 80
FALSE_ALARM_WINDOWS = 3


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


def test_false_alarm_rate_on_stationary_streams(detector_class: type[base.Detector[Any]]) -> None:
    """Alarms per window within the promised rate plus a 3-sigma binomial margin.

    Windows of one seed share a reference, so they are not independent; many seeds with few
    windows each keep the binomial margin honest.
    """
    alarms = 0
    trials = 0
    rate = 0.0
    for seed in range(FALSE_ALARM_SEEDS):
        detector, example = _build(detector_class, 1000 + seed)
        rate = example.false_alarm_rate
        for window in _stream(example, 5000 + seed, FALSE_ALARM_WINDOWS):
            alarms += detector.update(window).drifted
            trials += 1
    bound = rate + 3 * math.sqrt(rate * (1 - rate) / trials)
    assert alarms / trials <= bound, f"{alarms}/{trials} windows alarmed; promised {rate}, bound {bound:.3f}"

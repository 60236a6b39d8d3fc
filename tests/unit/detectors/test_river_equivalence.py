"""Our vectorised ADWIN / DDM / Page-Hinkley flag changes at exactly River's indices.

River is fed value by value (its API); ours gets the same values cut into windows at random
places (state must carry across windows). Streams: River's own synthetic concept-drift streams
seen through a fixed rule-based classifier (0/1 error streams), plus continuous streams.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from river import drift as river_drift_module
from river.datasets import synth

from detectors import registry, streaming

# River ships no type hints: use it through Any.
drift: Any = river_drift_module

# Streams are cached (and only read): several tests share one and River generates it in Python.


def river_changes(detector: Any, values: np.ndarray) -> list[int]:
    found = []
    for index, value in enumerate(values.tolist()):
        detector.update(value)
        if detector.drift_detected:
            found.append(index)
    return found


def river_warning_entries(detector: Any, values: np.ndarray) -> list[int]:
    entries, previous = [], False
    for index, value in enumerate(values.tolist()):
        detector.update(value)
        if detector.warning_detected and not previous:
            entries.append(index)
        previous = detector.warning_detected
    return entries


def in_windows(
    update_many: Callable[[np.ndarray], Any], values: np.ndarray, rng: np.random.Generator, pieces: int = 7
) -> list[int]:
    cuts = np.sort(rng.choice(np.arange(1, len(values)), size=pieces - 1, replace=False))
    found: list[int] = []
    for start, stop in itertools.pairwise([0, *cuts.tolist(), len(values)]):
        found += (np.asarray(update_many(values[start:stop])) + start).tolist()
    return found


@functools.cache
def sea_errors(n: int, position: int, seed: int) -> np.ndarray:
    """Errors of the fixed rule x0 + x1 <= 8 (SEA variant 0) on a stream drifting to variant 2."""
    stream = synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, seed=seed, noise=0.1),
        drift_stream=synth.SEA(variant=2, seed=seed + 1, noise=0.1),
        position=position,
        width=100,
        seed=seed,
    )
    return np.asarray([float((x[0] + x[1] > 8) != y) for x, y in stream.take(n)])


@functools.cache
def agrawal_errors(n: int, position: int, seed: int) -> np.ndarray:
    """Errors of Agrawal function 0's rule (age < 40 or >= 60) on a stream drifting to function 2."""
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=seed, perturbation=0.05),
        drift_stream=synth.Agrawal(classification_function=2, seed=seed + 1, perturbation=0.05),
        position=position,
        width=200,
        seed=seed,
    )
    return np.asarray([float(int(x["age"] < 40 or x["age"] >= 60) != y) for x, y in stream.take(n)])


@functools.cache
def friedman_abs_errors(n: int, seed: int) -> np.ndarray:
    """|error| of a fixed linear model on FriedmanDrift (global recurring drift): continuous values."""
    stream = synth.FriedmanDrift(drift_type="gra", position=(n // 3, 2 * n // 3), seed=seed)
    return np.asarray([abs(10 * x[0] + 5 * x[1] + 5 * x[3] - y) for x, y in stream.take(n)])


STREAMS = {
    "sea": lambda seed: sea_errors(6000, 3000, seed),
    "agrawal": lambda seed: agrawal_errors(6000, 3000, seed),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("seed", [1, 7])
def test_adwin_matches_river_on_error_streams(name: str, seed: int) -> None:
    values = STREAMS[name](seed)
    expected = river_changes(drift.ADWIN(), values)
    ours = in_windows(streaming.Adwin().update_many, values, np.random.default_rng(seed))
    assert ours == expected
    assert expected, "the stream must contain a change for the comparison to mean something"


@pytest.mark.parametrize(
    "params",
    [
        {"delta": 0.01, "clock": 1, "max_buckets": 2, "min_window_length": 1, "grace_period": 0},
        {"delta": 0.1, "clock": 7, "max_buckets": 3, "min_window_length": 5, "grace_period": 100},
        {"delta": 0.002, "clock": 32, "max_buckets": 5, "min_window_length": 10, "grace_period": 10},
    ],
)
def test_adwin_matches_river_on_continuous_stream(params: dict[str, Any]) -> None:
    errors = friedman_abs_errors(5000, seed=3)
    # A served model whose errors grow by 60% halfway: a continuous stream with a real change.
    values = np.concatenate([errors[:2500], errors[2500:] * 1.6])
    expected = river_changes(drift.ADWIN(**params), values)
    ours = in_windows(streaming.Adwin(**params).update_many, values, np.random.default_rng(0))
    assert ours == expected
    assert expected


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize(
    "params",
    [{}, {"warm_start": 0, "warning_threshold": 1.0, "drift_threshold": 2.0}, {"warm_start": 200}],
)
def test_ddm_matches_river_changes_and_warnings(name: str, params: dict[str, Any]) -> None:
    values = STREAMS[name](5)
    expected = river_changes(drift.binary.DDM(**params), values)
    expected_warnings = river_warning_entries(drift.binary.DDM(**params), values)
    ours = streaming.Ddm(**params)
    found_changes: list[int] = []
    found_warnings: list[int] = []
    rng = np.random.default_rng(2)
    cuts = np.sort(rng.choice(np.arange(1, len(values)), size=6, replace=False))
    for start, stop in itertools.pairwise([0, *cuts.tolist(), len(values)]):
        result = ours.update_many(values[start:stop])
        found_changes += (result.changes + start).tolist()
        found_warnings += (result.warnings + start).tolist()
    assert found_changes == expected
    assert found_warnings == expected_warnings
    assert expected


@pytest.mark.parametrize("mode", ["up", "down", "both"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"min_instances": 1, "delta": 0.05, "threshold": 5.0, "alpha": 0.99},
        {"threshold": 20.0, "alpha": 1.0},
    ],
)
def test_page_hinkley_matches_river(mode: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [friedman_abs_errors(3000, seed=4), sea_errors(3000, 1500, 9) * 3.0, rng.normal(2.0, 1.0, 2000)]
    )
    expected = river_changes(drift.PageHinkley(mode=mode, **params), values)
    ours = in_windows(streaming.PageHinkley(mode=mode, **params).update_many, values, rng)
    assert ours == expected
    assert expected


def test_long_stream_crosses_internal_chunks() -> None:
    # DDM and Page-Hinkley work in chunks of 4096 values: one long window must cross them exactly.
    values = np.concatenate([sea_errors(9000, 6000, 21), agrawal_errors(9000, 4000, 22)])
    assert streaming.Ddm().update_many(values).changes.tolist() == river_changes(drift.binary.DDM(), values)
    assert streaming.PageHinkley().update_many(values).tolist() == river_changes(drift.PageHinkley(), values)
    assert streaming.Adwin().update_many(values).tolist() == river_changes(drift.ADWIN(), values)


def test_bad_values_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="finite"):
        streaming.Adwin().update_many([0.0, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        streaming.Ddm().update_many([0.0, 0.5])
    with pytest.raises(ValueError, match="mode"):
        streaming.PageHinkley(mode="sideways")


@pytest.mark.parametrize(
    ("name", "river_detector"),
    [
        ("adwin", drift.ADWIN),
        ("ddm", drift.binary.DDM),
        ("page_hinkley", lambda: drift.PageHinkley(mode="up")),
    ],
)
@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_record_fed_detectors_alarm_at_rivers_records(
    name: str, river_detector: Callable[[], Any], stream: str
) -> None:
    """Fed one label-joined record at a time (the agent's way), each alarm names the record at
    which River, fed the same errors, flags the change; a state hand-over mid-way changes nothing."""
    values = STREAMS[stream](1)
    expected = river_changes(river_detector(), values)
    assert expected, "the stream must contain a change for this test to mean anything"
    detector: Any = registry.default_registry().create(name)
    found = []
    for index, error in enumerate(values.tolist()):
        if index == len(values) // 2 + 7:  # not on a check point: values wait in the buffer
            restored: Any = registry.default_registry().create(name)
            restored.load_state(detector.state())
            detector = restored
        # Prediction 1, label 0 is a wrong prediction (error 1); label 1 a right one.
        alarm = detector.update_record(1, int(error == 0.0), index, model_version=None, segment=None)
        if alarm is not None:
            found.append(alarm.alarm_at_record)
    assert found == expected

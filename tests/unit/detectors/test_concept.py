"""Performance against the labelled reference, and the streaming detectors as the agent uses them."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pydantic
import pytest

from detectors import base, concept, concept_streams
from detectors import window as window_mod


def classifier_window(
    rng: np.random.Generator, size: int, error_rate: float, **extra: Any
) -> window_mod.Window:
    labels = (rng.random(size) < 0.4).astype(np.float64)
    wrong = rng.random(size) < error_rate
    predictions = np.where(wrong, 1.0 - labels, labels)
    # Positive-class confidence: higher where the model predicts positive, with some noise.
    confidences = np.clip(0.5 + np.where(predictions == 1.0, 0.3, -0.3) + rng.normal(0, 0.1, size), 0, 1)
    return window_mod.Window(
        features={}, predictions=predictions, labels=labels, confidences=confidences, **extra
    )


def regression_window(rng: np.random.Generator, size: int, noise: float) -> window_mod.Window:
    labels = rng.normal(10.0, 2.0, size)
    return window_mod.Window(features={}, predictions=labels + rng.normal(0, noise, size), labels=labels)


def performance(reference: window_mod.Window, **config: object) -> concept.PerformanceDetector:
    detector = concept.PerformanceDetector(concept.PerformanceConfig.model_validate(config))
    detector.set_reference(reference)
    return detector


@pytest.mark.parametrize("metric", ["accuracy", "f1", "auc"])
def test_classification_quiet_when_stationary_and_fires_on_worse_model(metric: str) -> None:
    rng = np.random.default_rng(1)
    detector = performance(classifier_window(rng, 4000, 0.10), metric=metric)
    quiet = [detector.update(classifier_window(rng, 800, 0.10)).drifted for _ in range(20)]
    assert sum(quiet) <= 2
    worse = detector.update(classifier_window(rng, 800, 0.25))
    assert worse.drifted
    assert worse.statistic == metric
    assert worse.p_value is not None and worse.p_value < 0.05
    assert worse.effect_size is not None and worse.effect_size >= 0.02
    assert worse.extras[metric] < worse.extras[f"reference_{metric}"]


def test_large_windows_need_the_effect_floor_not_just_significance() -> None:
    rng = np.random.default_rng(2)
    detector = performance(classifier_window(rng, 200_000, 0.100), min_drop=0.02)
    result = detector.update(classifier_window(rng, 200_000, 0.108))
    assert result.p_value is not None and result.p_value < 0.001
    assert not result.drifted


@pytest.mark.parametrize("metric", ["mae", "rmse"])
def test_regression_quiet_then_fires_on_larger_errors(metric: str) -> None:
    rng = np.random.default_rng(3)
    detector = performance(regression_window(rng, 3000, 1.0), task="regression", metric=metric)
    assert sum(detector.update(regression_window(rng, 500, 1.0)).drifted for _ in range(20)) <= 2
    result = detector.update(regression_window(rng, 500, 1.3))
    assert result.drifted and result.higher_is_drift
    assert result.effect_size is not None and result.effect_size >= 0.10


def test_missing_labels_are_ignored_and_counted() -> None:
    rng = np.random.default_rng(4)
    detector = performance(classifier_window(rng, 2000, 0.1))
    window = classifier_window(rng, 500, 0.1)
    assert window.labels is not None
    labels = window.labels.copy()
    labels[:120] = np.nan
    result = detector.update(window_mod.Window(features={}, predictions=window.predictions, labels=labels))
    assert result.missing_count == 120
    assert result.current_size == 380


def test_string_labels_compare_with_numbers_and_segment_is_copied() -> None:
    rng = np.random.default_rng(5)
    reference = classifier_window(rng, 1000, 0.1)
    assert reference.labels is not None
    as_text = np.array(["1" if v == 1.0 else "0" for v in reference.labels.tolist()], dtype=np.object_)
    detector = performance(window_mod.Window(features={}, predictions=reference.predictions, labels=as_text))
    result = detector.update(classifier_window(rng, 500, 0.1, segment={"region": "eu"}, model_version="v2"))
    assert result.segment == {"region": "eu"} and result.model_version == "v2"
    assert result.extras["reference_accuracy"] == pytest.approx(
        1.0 - np.mean(reference.predictions != reference.labels)
    )


def test_no_labels_is_cannot_run_and_bad_config_names_the_field() -> None:
    rng = np.random.default_rng(6)
    detector = performance(classifier_window(rng, 500, 0.1))
    with pytest.raises(base.CannotRun, match="no labels"):
        detector.update(window_mod.Window(features={}, predictions=np.zeros(100)))
    with pytest.raises(pydantic.ValidationError, match="metric 'mae' does not fit task 'classification'"):
        concept.PerformanceConfig(metric="mae")
    with pytest.raises(pydantic.ValidationError, match="regression_tolerance"):
        concept_streams.DDMConfig(task="regression")
    with pytest.raises(ValueError, match="reference needs predictions and labels"):
        concept.PerformanceDetector(concept.PerformanceConfig()).set_reference(
            window_mod.Window(features={}, predictions=np.zeros(100))
        )


STREAM_DETECTORS = [
    lambda: concept_streams.ADWINDetector(concept_streams.ADWINConfig()),
    lambda: concept_streams.DDMDetector(concept_streams.DDMConfig()),
    lambda: concept_streams.PageHinkleyDetector(concept_streams.PageHinkleyConfig()),
]


@pytest.mark.parametrize("make", STREAM_DETECTORS)
def test_stream_detectors_quiet_then_locate_the_change(make) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    detector = make()
    alarms = sum(detector.update(classifier_window(rng, 500, 0.1)).drifted for _ in range(10))
    assert alarms == 0
    # The error rate jumps from 10% to 50% at row 200 of this window (or shortly after).
    first = classifier_window(rng, 200, 0.1)
    second = classifier_window(rng, 800, 0.5)
    joined = window_mod.Window(
        features={},
        predictions=np.concatenate([first.predictions, second.predictions]),
        labels=np.concatenate([first.labels, second.labels]),
    )
    result = detector.update(joined)
    assert result.drifted
    assert result.family is base.DetectorFamily.CONCEPT_DRIFT
    # Not before the change; DDM, whose mean remembers 5000 good rows, takes longest (~540 rows).
    assert 200 <= result.extras["first_change_offset"] < 1000


def test_stream_state_carries_across_windows_and_survives_pickle() -> None:
    rng = np.random.default_rng(8)
    windows = [classifier_window(rng, 300, 0.1) for _ in range(5)] + [classifier_window(rng, 300, 0.6)]
    whole = concept_streams.ADWINDetector(concept_streams.ADWINConfig())
    first_results = [whole.update(w) for w in windows[:3]]
    restored = pickle.loads(pickle.dumps(whole))
    assert [restored.update(w) for w in windows[3:]] == [whole.update(w) for w in windows[3:]]
    assert not any(r.drifted for r in first_results)
    whole.reset()
    fresh = concept_streams.ADWINDetector(concept_streams.ADWINConfig())
    assert whole.update(windows[0]) == fresh.update(windows[0])


def test_stream_offsets_skip_unlabelled_rows() -> None:
    errors = np.concatenate([np.zeros(300), np.ones(300)])
    labels = np.ones(600)
    labels[::2] = np.nan  # only odd rows carry labels
    detector = concept_streams.ADWINDetector(concept_streams.ADWINConfig())
    result = detector.update(window_mod.Window(features={}, predictions=1.0 - errors, labels=labels))
    assert result.drifted and result.missing_count == 300
    offset = int(result.extras["first_change_offset"])
    assert offset % 2 == 1 and offset >= 300


def test_regression_stream_uses_absolute_errors() -> None:
    rng = np.random.default_rng(9)
    detector = concept_streams.PageHinkleyDetector(
        concept_streams.PageHinkleyConfig(task="regression", threshold=20.0)
    )
    assert not detector.update(regression_window(rng, 1000, 0.5)).drifted
    assert detector.update(regression_window(rng, 1000, 3.0)).drifted


@pytest.mark.parametrize(("before", "after"), [(0.05, 0.30), (0.30, 0.05)])
def test_record_alarm_carries_the_error_rate_change_and_pages_only_on_a_rise(
    before: float, after: float
) -> None:
    rng = np.random.default_rng(3)
    detector = concept_streams.ADWINDetector(concept_streams.ADWINConfig())
    errors = np.concatenate([rng.random(3000) < before, rng.random(1000) < after])
    alarms = [
        found
        for index, wrong in enumerate(errors.tolist())
        if (
            found := detector.update_record(
                "a", "b" if wrong else "a", index, model_version=None, segment=None
            )
        )
    ]
    assert alarms and 3000 <= (alarms[0].alarm_at_record or 0) < 3300
    assert alarms[0].effect_size == pytest.approx(after - before, abs=0.08)
    assert alarms[0].drifted is (after > before)


def test_record_with_a_missing_label_or_prediction_is_not_fed() -> None:
    detector = concept_streams.ADWINDetector(concept_streams.ADWINConfig())
    for index in range(100):
        assert detector.update_record(None, 1, index, model_version=None, segment=None) is None
    window = window_mod.Window(features={})
    with pytest.raises(base.CannotRun, match="no label-joined record"):
        detector.summarise(window)

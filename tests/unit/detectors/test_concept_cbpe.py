"""CBPE on synthetic calibrated classifiers, where the realised metric is known."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import base, cbpe
from detectors import window as window_mod


def detector(metric: str, seed: int = 0) -> cbpe.CBPEDetector:
    found = cbpe.CBPEDetector(cbpe.CBPEConfig(metric=metric))
    found.set_reference(cbpe.calibrated_window(np.random.default_rng(seed), 5000))
    return found


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
def test_estimate_tracks_the_realised_metric_without_labels(metric: str) -> None:
    rng = np.random.default_rng(1)
    estimator = detector(metric)
    inside = alarms = 0
    for _ in range(40):
        result = estimator.update(cbpe.calibrated_window(rng, 500))
        inside += (
            result.extras["estimate_band_lower"]
            <= result.extras["realised"]
            <= result.extras["estimate_band_upper"]
        )
        alarms += result.drifted
    # A 3-sigma band holds the truth ~99.7% of the time; allow one miss in 40.
    assert inside >= 39
    assert alarms <= 2


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
def test_shift_towards_uncertain_traffic_is_flagged_before_labels_arrive(metric: str) -> None:
    rng = np.random.default_rng(2)
    estimator = detector(metric)
    # Beta(6, 6) puts the positive-class probability near 0.5: the model is right less often.
    shifted = cbpe.calibrated_window(rng, 500, a=6.0, b=6.0, labelled=False)
    result = estimator.update(shifted)
    assert result.drifted
    assert result.score < result.threshold
    assert "realised" not in result.extras
    truth = cbpe.calibrated_window(np.random.default_rng(2), 500, a=6.0, b=6.0)
    assert truth.labels is not None and truth.predictions is not None
    realised = cbpe.realised_metric(truth.labels == 1.0, truth.predictions == 1.0, metric)
    assert realised < result.extras["reference_realised"] - 0.03


def test_predicted_class_confidences_and_missing_values() -> None:
    rng = np.random.default_rng(3)
    reference = cbpe.calibrated_window(rng, 5000)
    assert reference.confidences is not None and reference.predictions is not None
    as_predicted = np.where(reference.predictions == 1.0, reference.confidences, 1.0 - reference.confidences)
    config = cbpe.CBPEConfig(confidence_kind="predicted_class")
    by_predicted = cbpe.CBPEDetector(config)
    by_predicted.set_reference(
        window_mod.Window(
            features={}, predictions=reference.predictions, confidences=as_predicted, labels=reference.labels
        )
    )
    by_positive = detector("accuracy", seed=3)
    window = cbpe.calibrated_window(rng, 400)
    assert window.confidences is not None and window.predictions is not None
    flipped = np.where(window.predictions == 1.0, window.confidences, 1.0 - window.confidences)
    flipped[:10] = np.nan
    result = by_predicted.update(
        window_mod.Window(features={}, predictions=window.predictions, confidences=flipped)
    )
    assert result.missing_count == 10
    expected = cbpe.expected_metric(window.confidences[10:], window.predictions[10:] == 1.0, "accuracy")
    assert result.score == pytest.approx(expected)
    assert by_positive.update(window).score != result.score  # the 10 dropped rows count there


def test_needs_confidences_and_a_labelled_reference() -> None:
    estimator = detector("accuracy")
    with pytest.raises(base.CannotRun, match="no confidences"):
        estimator.update(window_mod.Window(features={}, predictions=np.ones(100)))
    with pytest.raises(ValueError, match="needs labels"):
        cbpe.CBPEDetector(cbpe.CBPEConfig()).set_reference(
            cbpe.calibrated_window(np.random.default_rng(0), 1000, labelled=False)
        )

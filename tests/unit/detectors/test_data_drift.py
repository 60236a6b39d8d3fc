"""DataDriftDetector / PredictionDriftDetector behaviour beyond parity: bad data, config, skips."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from detectors import base, data_drift, registry
from detectors import window as window_mod


def _window(rng: np.random.Generator, n: int, shift: float = 0.0) -> window_mod.Window:
    return window_mod.Window(
        features={
            "x": rng.normal(shift, 1.0, n),
            "y": rng.normal(shift, 1.0, n),
            "city": rng.choice(np.array(["oslo", "rome"], dtype=object), n),
        }
    )


def _detector(**config: object) -> data_drift.DataDriftDetector:
    return data_drift.DataDriftDetector(data_drift.DataDriftConfig.model_validate(config))


def test_share_of_drifted_columns_against_drift_share() -> None:
    rng = np.random.default_rng(0)
    detector = _detector()
    detector.set_reference(_window(rng, 500))
    result = detector.update(_window(rng, 400, shift=1.0))
    by_feature = {d.feature: d for d in result.details}
    assert by_feature["x"].drifted and by_feature["y"].drifted and not by_feature["city"].drifted
    assert result.score == pytest.approx(2 / 3)
    assert result.drifted and result.statistic == "share_of_drifted_columns" and result.feature is None
    assert by_feature["x"].p_value is not None and by_feature["x"].effect_size is not None
    assert not by_feature["x"].higher_is_drift


def test_missing_values_are_counted_not_fatal() -> None:
    rng = np.random.default_rng(1)
    detector = _detector()
    detector.set_reference(_window(rng, 300))
    current = _window(rng, 200)
    x = current.features["x"].copy()
    x[:30] = np.nan
    city = current.features["city"].copy()
    city[:5] = None
    result = detector.update(window_mod.Window(features={**current.features, "x": x, "city": city}))
    by_feature = {d.feature: d for d in result.details}
    assert by_feature["x"].missing_count == 30 and by_feature["x"].current_size == 170
    assert by_feature["city"].missing_count == 5
    assert result.missing_count == 35


def test_all_missing_or_absent_column_is_reported_not_drifted() -> None:
    rng = np.random.default_rng(2)
    detector = _detector(drift_share=0.3)
    detector.set_reference(_window(rng, 300))
    current = _window(rng, 100)
    features = {"x": np.full(100, np.nan), "city": current.features["city"]}  # y absent
    result = detector.update(window_mod.Window(features=features))
    by_feature = {d.feature: d for d in result.details}
    for name in ("x", "y"):
        assert by_feature[name].statistic == data_drift.NO_DATA
        assert not by_feature[name].drifted
        assert by_feature[name].missing_count == 100
    assert result.extras["columns_without_data"] == 2
    assert not result.drifted


def test_strings_in_a_numeric_column_count_as_missing() -> None:
    rng = np.random.default_rng(3)
    detector = _detector()
    detector.set_reference(_window(rng, 300))
    current = _window(rng, 50)
    x = np.array([*current.features["x"][:48].tolist(), "oops", None], dtype=object)
    result = detector.update(window_mod.Window(features={**current.features, "x": x}))
    column = next(d for d in result.details if d.feature == "x")
    assert column.current_size == 48 and column.extras["wrong_type"] == 1


def test_per_column_test_and_threshold_override() -> None:
    rng = np.random.default_rng(4)
    detector = _detector(per_column_stattest={"x": "psi"}, per_column_threshold={"x": 0.2}, threshold=0.01)
    detector.set_reference(_window(rng, 300))
    result = detector.update(_window(rng, 300))
    by_feature = {d.feature: d for d in result.details}
    assert by_feature["x"].statistic == "psi" and by_feature["x"].threshold == 0.2
    assert by_feature["y"].statistic == "ks" and by_feature["y"].threshold == 0.01


def test_unknown_stattest_in_config_lists_valid_names() -> None:
    with pytest.raises(pydantic.ValidationError, match="valid names"):
        data_drift.DataDriftConfig(stattest="kolmogorov")
    with pytest.raises(registry.DetectorConfigError, match="drift_shar"):
        registry.default_registry().create("data_drift", {"drift_shar": 0.5})


def test_config_naming_a_missing_column_or_wrong_kind_fails_at_reference() -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"\['z'\].*reference columns"):
        _detector(per_column_stattest={"z": "ks"}).set_reference(_window(rng, 100))
    with pytest.raises(ValueError, match=r"column 'city'.*does not apply to categorical"):
        _detector(per_column_stattest={"city": "wasserstein"}).set_reference(_window(rng, 100))


def test_no_reference_means_cannot_run() -> None:
    with pytest.raises(base.CannotRun, match="no reference"):
        _detector().update(_window(np.random.default_rng(6), 10))


def test_prediction_drift_on_predictions_and_confidences() -> None:
    rng = np.random.default_rng(7)

    def window(n: int, positive: float, confidence: float) -> window_mod.Window:
        predictions = np.where(rng.random(n) < positive, "yes", "no").astype(object)
        return window_mod.Window(features={}, predictions=predictions, confidences=rng.beta(confidence, 2, n))

    detector = data_drift.PredictionDriftDetector(data_drift.DataDriftConfig())
    detector.set_reference(window(800, 0.3, 5))
    steady = detector.update(window(500, 0.3, 5))
    moved = detector.update(window(500, 0.6, 2))
    assert {d.feature for d in moved.details} == {"prediction", "confidence"}
    assert moved.family == base.DetectorFamily.PREDICTION_DRIFT
    assert moved.drifted and moved.score == 1.0
    assert steady.score < 1.0
    with pytest.raises(base.CannotRun, match="no predictions"):
        detector.update(window_mod.Window(features={"x": np.zeros(3)}))


def test_prediction_drift_without_reference_predictions_skips() -> None:
    detector = data_drift.PredictionDriftDetector(data_drift.DataDriftConfig())
    detector.set_reference(window_mod.Window(features={"x": np.zeros(5)}))
    with pytest.raises(base.CannotRun, match="no columns"):
        detector.update(window_mod.Window(features={}, predictions=np.zeros(5)))

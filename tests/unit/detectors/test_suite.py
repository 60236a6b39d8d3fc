from __future__ import annotations

import numpy as np
import pydantic
import pytest

from detectors import base, concept_streams, data_drift, registry, suite
from detectors import window as window_mod


def _window(
    rng: np.random.Generator, n: int, shift: float = 0.0, predictions: bool = True
) -> window_mod.Window:
    return window_mod.Window(
        features={"x": rng.normal(shift, 1.0, n)},
        predictions=rng.normal(shift, 1.0, n) if predictions else None,
        confidences=rng.random(n) if predictions else None,
    )


DRIFT_ONLY = suite.SuiteConfig(detectors={"data_drift": {}, "prediction_drift": {}})


def test_defaults_cover_drift_latency_errors_performance_and_quality() -> None:
    assert list(suite.SuiteConfig().detectors) == [
        "data_drift",
        "prediction_drift",
        "vector_mmd",
        "vector_component_drift",
        "latency",
        "error_rate",
        "performance",
        "adwin",
        *suite.QUALITY_CHECKS,
    ]


def test_label_detectors_split_from_the_rest() -> None:
    unlabelled, labelled = suite.split_by_labels(suite.SuiteConfig(), registry.default_registry())
    assert list(labelled.detectors) == ["performance", "adwin"]
    assert "performance" not in unlabelled.detectors and "adwin" not in unlabelled.detectors


def test_sequential_tests_split_from_window_detectors() -> None:
    labelled = suite.SuiteConfig(detectors={"performance": {}, "adwin": {}, "ddm": {}, "page_hinkley": {}})
    by_record, by_window = suite.split_record_fed(labelled, registry.default_registry())
    assert list(by_record.detectors) == ["adwin", "ddm", "page_hinkley"]
    assert list(by_window.detectors) == ["performance"]


def test_record_feeding_reports_alarms_and_window_summaries() -> None:
    runner = suite.DetectorSuite(suite.SuiteConfig(detectors={"page_hinkley": {"threshold": 5.0}}))
    alarms = []
    # Right answers for 300 records, then wrong ones: the error stream jumps from 0 to 1.
    for index in range(400):
        label = 1 if index < 300 else 0
        alarms += runner.update_record(1, label, index, model_version="v1", segment=None)
    assert len(alarms) == 1
    assert alarms[0].alarm_at_record is not None and 300 <= alarms[0].alarm_at_record < 320
    assert alarms[0].drifted and alarms[0].model_version == "v1"
    summary = runner.summarise(_window(np.random.default_rng(0), 10))
    assert [r.score for r in summary] == [1.0] and summary[0].current_size == 400
    # Nothing fed since that summary: the next one is skipped with a reason, not a verdict.
    assert runner.summarise(_window(np.random.default_rng(0), 10)) == []
    assert "no label-joined record" in runner.skipped[0].reason


def test_runs_every_configured_detector() -> None:
    rng = np.random.default_rng(0)
    runner = suite.DetectorSuite(DRIFT_ONLY)
    runner.set_reference(_window(rng, 400))
    results = runner.update(_window(rng, 300, shift=2.0))
    assert [r.detector for r in results] == ["data_drift", "prediction_drift"]
    assert results[0].drifted
    assert runner.skipped == []


def test_detector_that_cannot_run_is_skipped_with_reason() -> None:
    rng = np.random.default_rng(1)
    runner = suite.DetectorSuite(DRIFT_ONLY, registry.default_registry())
    runner.set_reference(_window(rng, 400))
    results = runner.update(_window(rng, 300, predictions=False))
    assert [r.detector for r in results] == ["data_drift"]
    assert [s.detector for s in runner.skipped] == ["prediction_drift"]
    assert "no predictions" in runner.skipped[0].reason


def test_a_detector_the_reference_does_not_fit_waits_for_one_that_does() -> None:
    rng = np.random.default_rng(2)
    runner = suite.DetectorSuite(suite.SuiteConfig(detectors={"data_drift": {}, "cbpe": {"min_samples": 20}}))
    runner.set_reference(_window(rng, 400))  # no labels: CBPE has no realised accuracy to start from
    assert list(runner.waiting) == ["cbpe"] and "needs labels" in runner.waiting["cbpe"]
    results = runner.update(_window(rng, 300))
    assert [r.detector for r in results] == ["data_drift"]
    assert [(s.detector, s.reason) for s in runner.skipped] == [("cbpe", runner.waiting["cbpe"])]
    confidences = rng.random(400)
    labelled = window_mod.Window(
        features={"x": rng.normal(0.0, 1.0, 400)},
        predictions=(confidences >= 0.5).astype(float),
        confidences=confidences,
        labels=(rng.random(400) < confidences).astype(float),
    )
    assert runner.offer_reference(labelled) == ["cbpe"]
    assert runner.waiting == {}
    assert [r.detector for r in runner.update(_window(rng, 300))] == ["data_drift", "cbpe"]


def test_unknown_detector_fails_at_construction_with_valid_names() -> None:
    config = suite.SuiteConfig(detectors={"data_drift": {}, "concept_drfit": {}})
    with pytest.raises(registry.UnknownDetectorError, match=r"valid names: .*data_drift"):
        suite.DetectorSuite(config)


def test_config_rejects_unknown_keys_and_keeps_detector_configs() -> None:
    with pytest.raises(pydantic.ValidationError):
        suite.SuiteConfig.model_validate({"detector": {}})
    runner = suite.DetectorSuite(suite.SuiteConfig(detectors={"data_drift": {"drift_share": 0.2}}))
    assert runner.names() == ("data_drift",)
    assert runner.configs()["data_drift"].model_dump()["drift_share"] == 0.2


def test_reset_keeps_results_reproducible() -> None:
    rng = np.random.default_rng(2)
    runner = suite.DetectorSuite(DRIFT_ONLY)
    runner.set_reference(_window(rng, 400))
    window = _window(rng, 300, shift=0.5)
    before = [r.to_json() for r in runner.update(window)]
    runner.reset()
    assert [r.to_json() for r in runner.update(window)] == before


class _Overflowing(data_drift.DataDriftDetector):
    """A detector with a bug: it raises on every window."""

    name = "overflowing"

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        raise FloatingPointError("overflow in the statistic of feature x")


class _FailingStream(concept_streams.PageHinkleyDetector):
    """A sequential test with a bug: it raises on every record."""

    name = "failing_stream"

    def update_record(self, *args: object, **kwargs: object) -> base.DetectorResult | None:
        raise IndexError("stream buffer")


def test_a_detector_that_raises_is_noted_and_the_others_still_run() -> None:
    with_broken = registry.Registry([*registry.default_registry().classes(), _Overflowing, _FailingStream])
    config = suite.SuiteConfig(detectors={"overflowing": {}, "data_drift": {}, "failing_stream": {}})
    runner = suite.DetectorSuite(config, with_broken)
    rng = np.random.default_rng(1)
    runner.set_reference(_window(rng, 500))
    results = runner.update(_window(rng, 500, shift=1.0))
    assert [r.detector for r in results] == ["data_drift"] and results[0].drifted
    assert runner.failed == [
        suite.Failed("overflowing", "FloatingPointError: overflow in the statistic of feature x")
    ]
    assert runner.update_record(1, 0, 7, model_version="v1", segment=None) == []
    assert runner.failed == [suite.Failed("failing_stream", "IndexError: stream buffer")]

"""From the windows the agent already has to ``Observations``: the agent only passes windows.

Both versions' windows should cover the same interval (``CanaryState.ready_at`` onwards). The
stable window is the reference for the canary-vs-stable tests (drift, performance), which reuse
the detectors of ``detectors/`` rather than a second implementation. A detector that cannot run
on this data (no labels yet, no shared columns) leaves its number out: that check is then
inconclusive (it pauses the step), never passed.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from actions.canary import config as config_mod
from actions.canary import state as state_mod
from detectors import base, concept, data_drift, latency
from detectors import window as window_mod

LOG = logging.getLogger(__name__)


def _finite(values: window_mod.FloatArray | None) -> window_mod.FloatArray:
    if values is None:
        return np.zeros(0)
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array) & (array >= 0)]


def _p95(values: window_mod.FloatArray | None) -> float | None:
    finite = _finite(values)
    return latency.window_quantiles(finite)["p95"] if len(finite) else None


def drift_config(config: config_mod.CanaryConfig) -> data_drift.DataDriftConfig:
    """Only the share of drifted columns is used: the check's bound is applied to it."""
    return data_drift.DataDriftConfig(stattest=config.drift_stattest, threshold=config.drift_threshold)


def performance_config(config: config_mod.CanaryConfig) -> concept.PerformanceConfig:
    return concept.PerformanceConfig(
        task=config.performance_task, metric=config.performance_metric, min_labelled=config.min_labelled
    )


def summarize(window: window_mod.Window) -> state_mod.VersionSummary:
    """Counts, error share and latency p95s of one version's window (performance is added later)."""
    statuses = _finite(window.errors)
    return state_mod.VersionSummary(
        version=window.model_version,
        count=window.size,
        status_count=len(statuses),
        errors=int(np.sum(statuses > 0)),
        latency_p95_ms=_p95(window.latency_ms),
        gpu_latency_p95_ms=_p95(window.gpu_latency_ms),
    )


def _drift(
    detector: data_drift.DataDriftDetector | data_drift.PredictionDriftDetector,
    canary: window_mod.Window,
    stable: window_mod.Window,
) -> state_mod.DriftSummary | None:
    try:
        detector.set_reference(stable)
        result = detector.update(canary)
    except (base.CannotRun, ValueError) as exc:
        LOG.info("canary %s: not measured (%s)", detector.name, exc)
        return None
    drifted = tuple(d.feature for d in result.details if d.drifted and d.feature is not None)
    return state_mod.DriftSummary(detector.name, result.score, drifted)


def _performance(
    config: concept.PerformanceConfig, canary: window_mod.Window, stable: window_mod.Window
) -> base.DetectorResult | None:
    detector = concept.PerformanceDetector(config)
    try:
        detector.set_reference(stable)
        return detector.update(canary)
    except (base.CannotRun, ValueError) as exc:  # labels arrive late: usually just not yet
        LOG.info("canary performance: not measured (%s)", exc)
        return None


def samples(window: window_mod.Window) -> state_mod.LatencySamples:
    return state_mod.LatencySamples(_finite(window.latency_ms), _finite(window.gpu_latency_ms))


def build_observations(
    canary: window_mod.Window,
    stable: window_mod.Window | None,
    config: config_mod.CanaryConfig,
    *,
    command: state_mod.Command | None = None,
    canary_labelled: window_mod.Window | None = None,
    stable_labelled: window_mod.Window | None = None,
    labels_expected: bool = False,
) -> state_mod.Observations:
    """Summaries and samples of both versions plus the canary-vs-stable tests the checks need.

    ``canary``/``stable`` are prediction windows (every record); the performance check reads the
    label-joined ones (``*_labelled``), or the prediction windows where those carry labels.
    """
    canary_summary = summarize(canary)
    stable_summary = summarize(stable) if stable is not None else None
    data = prediction = None
    metric: str | None = None
    higher_is_better = True
    performance: state_mod.PerformanceTest | None = None
    checks = config.checks
    if stable is not None and stable.size and canary.size:
        if checks.max_data_drift_share is not None:
            data = _drift(data_drift.DataDriftDetector(drift_config(config)), canary, stable)
        if checks.max_prediction_drift_share is not None:
            prediction = _drift(data_drift.PredictionDriftDetector(drift_config(config)), canary, stable)
    labelled_canary = canary_labelled if canary_labelled is not None else canary
    labelled_stable = stable_labelled if stable_labelled is not None else stable
    if checks.performance_tolerance is not None and labelled_stable is not None and labelled_canary.size:
        result = _performance(performance_config(config), labelled_canary, labelled_stable)
        if result is not None and result.p_value is not None:
            metric = result.statistic
            # The detector flags drops of accuracy/f1/auc and rises of mae/rmse.
            higher_is_better = not result.higher_is_drift
            baseline = float(result.extras[f"reference_{metric}"])
            performance = state_mod.PerformanceTest(
                metric=metric,
                canary=float(result.score),
                stable=baseline,
                p_value=float(result.p_value),
                higher_is_better=higher_is_better,
                n_canary=result.current_size,
                n_stable=result.reference_size,
            )
            canary_summary = _with_performance(canary_summary, result.score, result.current_size)
            if stable_summary is not None:
                stable_summary = _with_performance(stable_summary, baseline, result.reference_size)
    return state_mod.Observations(
        canary=canary_summary,
        stable=stable_summary,
        data_drift=data,
        prediction_drift=prediction,
        performance_metric=metric,
        performance_higher_is_better=higher_is_better,
        canary_samples=samples(canary),
        stable_samples=samples(stable) if stable is not None else None,
        performance=performance,
        labels_expected=labels_expected,
        command=command,
    )


def _with_performance(
    summary: state_mod.VersionSummary, value: float, labelled: int
) -> state_mod.VersionSummary:
    return dataclasses.replace(summary, labelled=labelled, performance=float(value))

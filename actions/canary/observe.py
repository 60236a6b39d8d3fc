"""From the windows the agent already has to ``Observations``: the agent only passes windows.

Both versions' windows should cover the same interval (``CanaryState.ready_at`` onwards). The
stable window is the reference for the canary-vs-stable tests (drift, performance), which reuse
the detectors of ``detectors/`` rather than a second implementation. A detector that cannot run
on this data (no labels yet, no shared columns) leaves its number out: that check is then "not
measured", never failed.
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


def build_observations(
    canary: window_mod.Window,
    stable: window_mod.Window | None,
    config: config_mod.CanaryConfig,
    *,
    command: state_mod.Command | None = None,
) -> state_mod.Observations:
    """Summaries of both versions plus the canary-vs-stable tests the enabled checks need."""
    canary_summary = summarize(canary)
    stable_summary = summarize(stable) if stable is not None else None
    data = prediction = None
    metric: str | None = None
    higher_is_better = True
    if stable is not None and stable.size and canary.size:
        checks = config.checks
        if checks.max_data_drift_share is not None:
            data = _drift(data_drift.DataDriftDetector(drift_config(config)), canary, stable)
        if checks.max_prediction_drift_share is not None:
            prediction = _drift(data_drift.PredictionDriftDetector(drift_config(config)), canary, stable)
        result = None
        if checks.performance_tolerance is not None:
            result = _performance(performance_config(config), canary, stable)
        if result is not None and stable_summary is not None:
            metric = result.statistic
            # The detector flags drops of accuracy/f1/auc and rises of mae/rmse.
            higher_is_better = not result.higher_is_drift
            canary_summary = _with_performance(canary_summary, result.score, result.current_size)
            stable_summary = _with_performance(
                stable_summary, result.extras[f"reference_{metric}"], result.reference_size
            )
    return state_mod.Observations(
        canary=canary_summary,
        stable=stable_summary,
        data_drift=data,
        prediction_drift=prediction,
        performance_metric=metric,
        performance_higher_is_better=higher_is_better,
        command=command,
    )


def _with_performance(
    summary: state_mod.VersionSummary, value: float, labelled: int
) -> state_mod.VersionSummary:
    return dataclasses.replace(summary, labelled=labelled, performance=float(value))

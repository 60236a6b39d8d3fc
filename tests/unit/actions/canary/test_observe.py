"""From per-version windows to Observations, through the real detectors."""

from __future__ import annotations

import numpy as np
import pytest

from actions.canary import observe
from actions.canary import state as state_mod
from actions.canary import step as step_mod
from detectors import window as window_mod
from tests.support.canary import factories as f
from tests.support.canary.windows import make_window


def test_summaries_count_errors_and_take_latency_p95_of_finite_values() -> None:
    rng = np.random.default_rng(1)
    canary = make_window(rng, 400, version="2", error_rate=0.05)
    assert canary.gpu_latency_ms is not None and canary.errors is not None
    canary.gpu_latency_ms[:10] = np.nan  # a record without GPU timing must not poison the p95
    observations = observe.build_observations(canary, None, f.config())
    summary = observations.canary
    assert summary is not None and observations.stable is None
    assert (summary.version, summary.count, summary.status_count) == ("2", 400, 400)
    assert summary.errors == int(canary.errors.sum()) and summary.errors > 0
    assert summary.gpu_latency_p95_ms == pytest.approx(float(np.quantile(canary.gpu_latency_ms[10:], 0.95)))
    assert observations.data_drift is None  # nothing to compare with


def test_feature_drift_between_versions_is_measured_against_the_stable_window() -> None:
    rng = np.random.default_rng(2)
    stable = make_window(rng, 3000, version="1")
    # 1000 rows: the default normed Wasserstein test (bound 0.1) then sees little sampling noise.
    same = observe.build_observations(make_window(rng, 1000, version="2"), stable, f.config())
    shifted = observe.build_observations(
        make_window(rng, 1000, version="2", feature_shift=1.0), stable, f.config()
    )
    assert same.data_drift is not None and same.data_drift.share == 0.0
    assert shifted.data_drift is not None
    assert shifted.data_drift.share == 0.5 and shifted.data_drift.drifted_columns == ("amount",)
    assert same.prediction_drift is None  # off by default


def test_performance_is_compared_only_where_labels_arrived() -> None:
    rng = np.random.default_rng(3)
    stable = make_window(rng, 2000, version="1", accuracy=0.9)
    canary = make_window(rng, 400, version="2", accuracy=0.8)
    observations = observe.build_observations(canary, stable, f.config())
    assert observations.performance_metric == "accuracy" and observations.performance_higher_is_better
    assert observations.canary is not None and observations.stable is not None
    assert canary.labels is not None and canary.predictions is not None
    assert observations.canary.performance == pytest.approx(
        float(np.mean(canary.labels == canary.predictions))
    )
    assert observations.stable.performance is not None and observations.stable.performance > 0.88
    assert observations.canary.labelled == 400

    unlabelled = observe.build_observations(make_window(rng, 400, version="2"), stable, f.config())
    assert unlabelled.performance_metric is None
    assert unlabelled.canary is not None and unlabelled.canary.performance is None


def test_windows_to_verdict_a_slower_canary_is_rolled_back() -> None:
    rng = np.random.default_rng(4)
    cfg = f.config(max_failed_checks=1)
    stable = make_window(rng, 3000, version="1", accuracy=0.9)
    slow = make_window(rng, 300, version="2", gpu_slowdown=1.5, accuracy=0.9)
    state, actions = step_mod.step(f.started(cfg), observe.build_observations(slow, stable, cfg), cfg, 60)
    assert state.phase is state_mod.Phase.ROLLED_BACK
    assert state.last_analysis is not None
    # End-to-end latency contains the GPU time, so it regresses too.
    failures = [c.name for c in state.last_analysis.failures]
    assert failures == ["gpu_latency_p95_vs_stable", "latency_p95_vs_stable"]

    good = make_window(rng, 300, version="2", accuracy=0.9)
    state, actions = step_mod.step(f.started(cfg), observe.build_observations(good, stable, cfg), cfg, 60)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]


def test_empty_or_columnless_windows_never_crash() -> None:
    empty = window_mod.Window(features={}, model_version="2")
    observations = observe.build_observations(empty, empty, f.config())
    assert observations.canary is not None and observations.canary.count == 0
    assert observations.canary.gpu_latency_p95_ms is None and observations.canary.error_rate is None
    cfg = f.config(checks={"max_prediction_drift_share": 0.5})
    rng = np.random.default_rng(5)
    no_outputs = observe.build_observations(
        make_window(rng, 100, version="2"), make_window(rng, 100, version="1"), cfg
    )
    assert no_outputs.prediction_drift is None  # neither window carries predictions: not measured

"""Observations for the step tests: a healthy canary and one-field departures from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from actions.canary import config as config_mod
from actions.canary import state as state_mod
from actions.canary import step as step_mod

STABLE = "1"
CANDIDATE = "2"
INTERVAL_S = 60.0


def config(**changes: object) -> config_mod.CanaryConfig:
    base: dict[str, object] = {
        "analysis_interval_s": INTERVAL_S,
        "min_samples": 50,
        "stall_alert_after_s": 600,
    }
    base.update(changes)
    return config_mod.CanaryConfig.model_validate(base)


def canary(**changes: object) -> state_mod.VersionSummary:
    summary = state_mod.VersionSummary(
        version=CANDIDATE,
        count=500,
        status_count=500,
        errors=5,
        latency_p95_ms=30.0,
        gpu_latency_p95_ms=10.0,
        labelled=100,
        performance=0.90,
    )
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


def stable(**changes: object) -> state_mod.VersionSummary:
    summary = state_mod.VersionSummary(
        version=STABLE,
        count=2000,
        status_count=2000,
        errors=20,
        latency_p95_ms=30.0,
        gpu_latency_p95_ms=10.0,
        labelled=1000,
        performance=0.90,
    )
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


# Latency is log-normal with this shape (a typical serving tail: p99/p50 about 2).
LATENCY_SIGMA = 0.3


def latency_samples(p95_ms: float | None, count: int, seed: int) -> npt.NDArray[np.float64] | None:
    """``count`` log-normal latencies whose true p95 is ``p95_ms``."""
    if p95_ms is None:
        return None
    z = np.random.default_rng(seed).standard_normal(count)
    samples: npt.NDArray[np.float64] = p95_ms * np.exp(LATENCY_SIGMA * (z - 1.6448536))
    return samples


def samples_of(summary: state_mod.VersionSummary | None, seed: int) -> state_mod.LatencySamples | None:
    if summary is None:
        return None
    return state_mod.LatencySamples(
        latency_samples(summary.latency_p95_ms, summary.count, seed),
        latency_samples(summary.gpu_latency_p95_ms, summary.count, seed + 1),
    )


def performance(**changes: object) -> state_mod.PerformanceTest:
    """A label-joined comparison where the canary is as good as stable."""
    test = state_mod.PerformanceTest(
        metric="accuracy",
        canary=0.90,
        stable=0.90,
        p_value=0.5,
        higher_is_better=True,
        n_canary=2000,
        n_stable=1000,
    )
    return dataclasses.replace(test, **changes)  # type: ignore[arg-type]


def healthy(percent: int = 5, *, seed: int = 0, **changes: object) -> state_mod.Observations:
    """What a good canary looks like at ``percent``: stable traffic shrinks as the canary grows.

    Latency samples follow the summaries' p95s unless ``changes`` gives samples of its own.
    """
    stable_count = 2000 * (100 - percent) // 100
    observations = state_mod.Observations(
        canary=canary(),
        stable=stable(count=stable_count, status_count=stable_count, errors=stable_count // 100),
        data_drift=state_mod.DriftSummary("data_drift", 0.0),
        prediction_drift=state_mod.DriftSummary("prediction_drift", 0.0),
        performance_metric="accuracy",
        performance=performance(),
        labels_expected=True,
    )
    observations = dataclasses.replace(observations, **changes)  # type: ignore[arg-type]
    if "canary_samples" not in changes:
        observations = dataclasses.replace(observations, canary_samples=samples_of(observations.canary, seed))
    if "stable_samples" not in changes:
        observations = dataclasses.replace(
            observations, stable_samples=samples_of(observations.stable, seed + 100)
        )
    return observations


def started(cfg: config_mod.CanaryConfig, now: float = 0.0) -> state_mod.CanaryState:
    state, actions = step_mod.begin(
        canary_id="c1",
        model_name="fraud",
        stable_version=STABLE,
        candidate_version=CANDIDATE,
        config=cfg,
        now=now,
    )
    assert actions == [state_mod.SetTraffic(cfg.steps[0])]
    return state


def effects(actions: list[state_mod.CanaryAction]) -> list[state_mod.CanaryAction]:
    return [action for action in actions if not isinstance(action, state_mod.Wait)]

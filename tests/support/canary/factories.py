"""Observations for the step tests: a healthy canary and one-field departures from it."""

from __future__ import annotations

import dataclasses

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
        count=200,
        status_count=200,
        errors=2,
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


def healthy(percent: int = 5, **changes: object) -> state_mod.Observations:
    """What a good canary looks like at ``percent``: stable traffic shrinks as the canary grows."""
    stable_count = 2000 * (100 - percent) // 100
    observations = state_mod.Observations(
        canary=canary(),
        stable=stable(count=stable_count, status_count=stable_count, errors=stable_count // 100),
        data_drift=state_mod.DriftSummary("data_drift", 0.0),
        prediction_drift=state_mod.DriftSummary("prediction_drift", 0.0),
        performance_metric="accuracy",
    )
    return dataclasses.replace(observations, **changes)  # type: ignore[arg-type]


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

"""Settings group ``canary``: the traffic steps, the analysis cadence and the bounds of every check.

A bound set to null switches its check off. The checks themselves live in one table
(``actions.canary.checks``); this module only says how strict each one is.
"""

from __future__ import annotations

import itertools
from typing import Literal

import pydantic

DEFAULT_STEPS = (5, 10, 25, 50, 100)


class _Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class CanaryChecks(_Config):
    """Bounds the canary must stay within in every analysis; null = that check is off."""

    max_error_rate: float | None = pydantic.Field(
        0.05,
        ge=0,
        le=1,
        description="Canary error share (status=error) may not exceed this: fails when the exact binomial "
        "test says it is above with significance (canary.alpha).",
    )
    max_error_rate_increase: float | None = pydantic.Field(
        0.01,
        ge=0,
        le=1,
        description="Canary error share may exceed the stable version's by at most this (absolute), tested "
        "as max_error_rate with stable's share + this as the bound.",
    )
    max_gpu_latency_regression: float | None = pydantic.Field(
        0.05,
        ge=0,
        description="Effect floor of the GPU-latency check: the canary fails when its p95 is higher than "
        "stable's with significance (bootstrap, canary.alpha) AND more than stable p95 * (1 + this); "
        "0.05 = 5% slower.",
    )
    gpu_p95_slo_ms: float | None = pydantic.Field(
        None, gt=0, description="Absolute bound on the canary's GPU-latency p95 in ms."
    )
    max_latency_regression: float | None = pydantic.Field(
        0.05,
        ge=0,
        description="Effect floor of the end-to-end latency check, as max_gpu_latency_regression.",
    )
    latency_p95_slo_ms: float | None = pydantic.Field(
        None, gt=0, description="Absolute bound on the canary's end-to-end latency p95 in ms."
    )
    max_data_drift_share: float | None = pydantic.Field(
        0.5,
        ge=0,
        le=1,
        description="Share of features drifted between canary and stable traffic may not exceed this. Both "
        "get the same requests, so feature drift between them means a routing or logging fault.",
    )
    max_prediction_drift_share: float | None = pydantic.Field(
        None,
        ge=0,
        le=1,
        description="Share of output columns (prediction, confidence) drifted canary vs stable may not "
        "exceed this. Off by default: a retrained model is meant to predict differently.",
    )
    performance_tolerance: float | None = pydantic.Field(
        0.02,
        ge=0,
        description="Where labels arrive: the canary fails when its label-joined metric is worse than "
        "stable's with significance (canary.alpha) AND by more than this (accuracy/f1/auc: absolute drop; "
        "mae/rmse: relative rise). Inconclusive while either version has fewer than min_labelled rows.",
    )


class CanaryConfig(_Config):
    """Settings group ``canary``."""

    steps: list[int] = pydantic.Field(
        default_factory=lambda: list(DEFAULT_STEPS),
        description="Canary traffic percentages, strictly increasing; success at the last one promotes.",
    )
    max_share_error_pct: float = pydantic.Field(
        5.0,
        ge=0,
        le=100,
        description="A step the target cannot serve within this many percentage points of its share (a "
        "Deployment splits by replicas: with 2 replicas a 5% step serves 50%) refuses the canary at "
        "planning, naming the shares it can serve. KServe serves every share exactly.",
    )
    analysis_interval_s: float = pydantic.Field(
        300.0, gt=0, description="Seconds of served traffic at a step before it is analysed."
    )
    min_samples: int = pydantic.Field(
        100,
        ge=1,
        description="Fewer records than this for the canary (or the stable version) since the step's traffic "
        "was served: the analysis waits for data; it neither passes nor fails. Each check also has its own "
        "minimum (an inconclusive check waits too): error rates the count at which an error-free canary "
        "could show it is within the bound, latency latency_min_samples, performance min_labelled.",
    )
    max_failed_checks: int = pydantic.Field(
        2,
        ge=1,
        description="Roll back once this many analyses have failed during one canary (counted over the "
        "whole canary, not consecutively: a flapping canary is rolled back too).",
    )
    stall_alert_after_s: float | None = pydantic.Field(
        3600.0,
        gt=0,
        description="Alert (once) when a step has waited this long for data or a rollout; null = never.",
    )
    checks: CanaryChecks = pydantic.Field(
        default_factory=CanaryChecks, description="Bounds of the analysis checks."
    )
    drift_stattest: str | None = pydantic.Field(
        None,
        description="Per-column test for canary-vs-stable drift (a detectors.stattests name); null = "
        "Evidently's choice per column.",
    )
    drift_threshold: float | None = pydantic.Field(
        None, description="Threshold of that test; null = the test's default."
    )
    performance_task: Literal["classification", "regression"] = pydantic.Field(
        "classification", description="What the model does, for the performance check."
    )
    performance_metric: Literal["accuracy", "f1", "auc", "mae", "rmse"] | None = pydantic.Field(
        None, description="Metric of the performance check; null = accuracy / rmse by task."
    )
    min_labelled: int = pydantic.Field(
        30, ge=2, description="Labelled rows each version needs before the performance check runs."
    )
    alpha: float = pydantic.Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Significance level of every check's one-sided test: a check fails only when the canary "
        "is worse with p < alpha AND by more than its bound. Each check's false-failure rate on an equal "
        "canary is at most alpha.",
    )
    latency_min_samples: int = pydantic.Field(
        200,
        ge=20,
        description="Latency samples each version needs before a latency check passes or fails (below: "
        "inconclusive, the step waits). 200 puts 10 samples above the p95.",
    )
    bootstrap_resamples: int = pydantic.Field(
        1000, ge=100, description="Bootstrap resamples of the latency checks."
    )

    @pydantic.field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("canary.steps is empty: give percentages such as [5, 10, 25, 50, 100]")
        if any(not 0 < percent <= 100 for percent in steps):
            raise ValueError(f"canary.steps {steps}: every step must be in 1..100")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError(f"canary.steps {steps}: percentages must strictly increase")
        return steps

    @pydantic.field_validator("drift_stattest")
    @classmethod
    def _known_stattest(cls, name: str | None) -> str | None:
        if name is not None:
            # Imported only when a test is named: settings must load without scipy's start-up cost.
            from detectors import stattests  # noqa: PLC0415

            stattests.get(name)
        return name

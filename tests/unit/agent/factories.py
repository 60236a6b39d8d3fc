"""Builders for detector results, override states and a policy run over a sequence of windows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from actions import base as actions_base
from agent import overrides, policy
from detectors import base

DATA = base.DetectorFamily.DATA_DRIFT
PERF = base.DetectorFamily.PERFORMANCE
LATENCY = base.DetectorFamily.LATENCY
NO_OVERRIDES = overrides.OverrideState()


def pvalue_result(
    feature: str | None,
    *,
    drifted: bool,
    detector: str = "ks",
    effect: float | None = 0.1,  # below the data-drift rule's material floor (0.15): graded by share
    n: int = 500,
    version: str | None = "1",
    segment: Mapping[str, str] | None = None,
    p_value: float | None = None,
) -> base.DetectorResult:
    """A p-value test verdict (score = p-value, drift below the threshold)."""
    p = p_value if p_value is not None else (0.001 if drifted else 0.4)
    return base.DetectorResult(
        detector=detector,
        family=DATA,
        feature=feature,
        statistic="ks",
        score=p,
        threshold=0.05,
        drifted=drifted,
        higher_is_drift=False,
        p_value=p,
        effect_size=effect,
        reference_size=n,
        current_size=n,
        model_version=version,
        segment=segment,
    )


def data_window(
    drifted: int,
    *,
    n_features: int = 10,
    n: int = 500,
    effect: float | None = 0.1,  # below the data-drift rule's material floor (0.15): graded by share
    version: str | None = "1",
    segment: Mapping[str, str] | None = None,
) -> list[base.DetectorResult]:
    """One dataset verdict whose per-feature details have ``drifted`` of ``n_features`` drifted."""
    details = tuple(
        pvalue_result(f"f{i}", drifted=i < drifted, effect=effect, n=n, version=version, segment=segment)
        for i in range(n_features)
    )
    parent = base.DetectorResult(
        detector="ks",
        family=DATA,
        feature=None,
        statistic="share_drifted",
        score=drifted / n_features,
        threshold=0.5,
        drifted=drifted / n_features >= 0.5,
        current_size=n,
        reference_size=n,
        model_version=version,
        segment=segment,
        details=details,
    )
    return [parent]


def score_result(
    feature: str | None,
    *,
    score: float,
    threshold: float = 0.1,
    detector: str = "wasserstein",
    family: base.DetectorFamily = DATA,
    n: int = 500,
    version: str | None = "1",
    effect: float | None = None,
) -> base.DetectorResult:
    """A higher-is-drift score verdict (drifted when score >= threshold)."""
    return base.DetectorResult(
        detector=detector,
        family=family,
        feature=feature,
        statistic=detector,
        score=score,
        threshold=threshold,
        drifted=score >= threshold,
        effect_size=effect,
        reference_size=n,
        current_size=n,
        model_version=version,
    )


def perf_result(drop: float, *, version: str = "1", n: int = 500) -> base.DetectorResult:
    """Accuracy drop ``drop`` (absolute) vs the baseline; drifted when it is at least 0.02."""
    return base.DetectorResult(
        detector="performance",
        family=PERF,
        feature=None,
        statistic="accuracy",
        score=0.9 - drop,
        threshold=0.88,
        drifted=drop >= 0.02,
        higher_is_drift=False,
        p_value=0.001 if drop >= 0.02 else 0.5,
        effect_size=drop,
        reference_size=n,
        current_size=n,
        model_version=version,
    )


def override_state(text: str) -> overrides.OverrideState:
    return overrides.OverrideState(file=overrides.parse(text, "test"), content_hash="test")


@dataclasses.dataclass
class Run:
    """Feeds windows to ``decide`` one after another and keeps every decision."""

    config: policy.PolicyConfig = dataclasses.field(default_factory=policy.PolicyConfig)
    state: policy.PolicyState = dataclasses.field(default_factory=policy.PolicyState)
    overrides: overrides.OverrideState = NO_OVERRIDES
    decisions: list[policy.Decision] = dataclasses.field(default_factory=list)

    def window(self, results: Sequence[base.DetectorResult], now: float) -> policy.Decision:
        self.state, decision = policy.decide(self.state, results, self.config, self.overrides, now)
        self.decisions.append(decision)
        return decision

    def windows(
        self, batches: Iterable[Sequence[base.DetectorResult]], start: float, step: float = 60.0
    ) -> None:
        for index, results in enumerate(batches):
            self.window(results, start + index * step)

    def keys(self) -> list[str]:
        return [a.idempotency_key for d in self.decisions for a in d.actions]


def kinds(decision: policy.Decision) -> list[actions_base.ActionKind]:
    return [a.kind for a in decision.actions]


def events(decision: policy.Decision) -> list[str]:
    return [report.event for report in decision.incidents]

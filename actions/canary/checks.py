"""Every canary check in one table; one function evaluates them all.

A row names the setting that bounds the check (null there switches it off) and the judge that
turns the canary's data into pass, fail or inconclusive with the statistic behind it
(``actions.canary.judge``). A check that cannot be measured with the data there is says
INCONCLUSIVE, which pauses the step: "not measured" is never a pass. The exceptions say why in
their note: the performance check without any labels source (not applicable), and the data-drift
checks, whose per-column tests carry their own significance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from actions.canary import config as config_mod
from actions.canary import judge
from actions.canary import state as state_mod

Outcome = judge.Outcome


@dataclasses.dataclass(frozen=True)
class Inputs:
    canary: state_mod.VersionSummary
    stable: state_mod.VersionSummary | None  # this interval's, or the last one with enough data
    observations: state_mod.Observations


Judge = Callable[[Inputs, float, config_mod.CanaryConfig], judge.Evidence | state_mod.CheckResult]


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    setting: str  # field of CanaryChecks; null there = off
    judge: Judge
    needs_stable: bool


def _result(name: str, evidence: judge.Evidence) -> state_mod.CheckResult:
    return state_mod.CheckResult(
        name,
        evidence.outcome is Outcome.PASS,
        value=evidence.value,
        bound=evidence.bound,
        note=evidence.note,
        outcome=evidence.outcome.value,
        statistic=evidence.statistic,
        baseline=evidence.baseline,
        p_value=evidence.p_value,
        n_canary=evidence.n_canary,
        n_stable=evidence.n_stable,
        min_samples=evidence.min_samples,
    )


def _plain(name: str, outcome: Outcome, note: str, **numbers: float | str | None) -> state_mod.CheckResult:
    return state_mod.CheckResult(
        name,
        outcome is Outcome.PASS,
        note=note,
        outcome=outcome.value,
        **numbers,  # type: ignore[arg-type]
    )


def _error_rate(inputs: Inputs, setting: float, config: config_mod.CanaryConfig) -> judge.Evidence:
    canary = inputs.canary
    return judge.rate_above(canary.errors, canary.status_count, setting, alpha=config.alpha, baseline=None)


def _error_rate_vs_stable(
    inputs: Inputs, setting: float, config: config_mod.CanaryConfig
) -> judge.Evidence | state_mod.CheckResult:
    stable_rate = inputs.stable.error_rate if inputs.stable is not None else None
    if stable_rate is None:
        return _plain("error_rate_vs_stable", Outcome.INCONCLUSIVE, "no stable error count to compare with")
    # Stable's share is taken as known: its sample is the larger by the canary's design (it
    # serves the rest of the traffic), and at 100% it is the last baseline with enough data.
    canary = inputs.canary
    return judge.rate_above(
        canary.errors, canary.status_count, stable_rate + setting, alpha=config.alpha, baseline=stable_rate
    )


def _latency(
    samples: Callable[[state_mod.LatencySamples], np.ndarray | None],
    summary_p95: Callable[[state_mod.VersionSummary], float | None],
    *,
    relative: bool,
) -> Judge:
    def check(
        inputs: Inputs, setting: float, config: config_mod.CanaryConfig
    ) -> judge.Evidence | state_mod.CheckResult:
        observations = inputs.observations
        canary = samples(observations.canary_samples) if observations.canary_samples else None
        stable_samples = samples(observations.stable_samples) if observations.stable_samples else None
        if canary is None or len(canary) == 0:
            if relative and (stable_samples is None or len(stable_samples) == 0):
                # Neither version logs this timing (no GPU timer in the server): nothing to wait for.
                return _plain("latency", Outcome.PASS, "not applicable: neither version logs this latency")
            return _plain("latency", Outcome.INCONCLUSIVE, "no canary latency samples this interval")
        reference: np.ndarray | float | None
        if not relative:
            reference, floor = setting, 0.0  # an SLO: the canary's p95 against a fixed number
        else:
            if stable_samples is not None and len(stable_samples) >= config.latency_min_samples:
                reference = stable_samples
            else:  # no stable traffic left (100%): the last stable baseline's p95
                reference = summary_p95(inputs.stable) if inputs.stable is not None else None
            floor = setting
        if reference is None:
            return _plain("latency", Outcome.INCONCLUSIVE, "no stable latency to compare with")
        return judge.quantile_regression(
            canary,
            reference,
            max_regression=floor,
            alpha=config.alpha,
            min_samples=config.latency_min_samples,
            resamples=config.bootstrap_resamples,
        )

    return check


def _drift_share(
    drift: Callable[[state_mod.Observations], state_mod.DriftSummary | None],
) -> Judge:
    def check(inputs: Inputs, setting: float, _config: config_mod.CanaryConfig) -> state_mod.CheckResult:
        summary = drift(inputs.observations)
        stable_count = inputs.observations.stable.count if inputs.observations.stable else None
        if summary is None and not stable_count:
            # At 100% no stable traffic is left: the split's routing was checked at every earlier step.
            return _plain("drift", Outcome.PASS, "not applicable: no stable traffic to compare with")
        if summary is None:
            return _plain("drift", Outcome.INCONCLUSIVE, "canary and stable traffic could not be compared")
        failed = summary.share > setting
        drifted = ", ".join(summary.drifted_columns) or "none"
        return _plain(
            "drift",
            Outcome.FAIL if failed else Outcome.PASS,
            f"{summary.share:.0%} of columns drifted canary vs stable (per-column tests; bound "
            f"{setting:.0%}; drifted: {drifted})",
            value=summary.share,
            bound=setting,
            n_canary=inputs.canary.count,
            n_stable=stable_count,
        )

    return check


# The test detectors.concept's performance detector applies to each metric.
_PERFORMANCE_TESTS = {
    "accuracy": "two_proportion_z",
    "auc": "auc_normal_approximation",
    "f1": "bootstrap_f1",
    "mae": "welch_t",
    "rmse": "welch_t",
}


def _performance(inputs: Inputs, setting: float, config: config_mod.CanaryConfig) -> state_mod.CheckResult:
    observations = inputs.observations
    test = observations.performance
    if test is None:
        if not observations.labels_expected:
            return _plain("performance", Outcome.PASS, "not applicable: the agent has no labels source")
        labelled = f"{inputs.canary.labelled} canary" + (
            f", {inputs.stable.labelled} stable" if inputs.stable is not None else ""
        )
        return _plain(
            "performance",
            Outcome.INCONCLUSIVE,
            f"{labelled} labelled rows; {config.min_labelled} of each are needed",
            min_samples=config.min_labelled,
        )
    if test.higher_is_better:
        effect, bound = test.stable - test.canary, test.stable - setting
        worse_by = f"{effect:+.4f} drop"
    else:
        effect = test.canary / max(test.stable, 1e-12) - 1.0
        bound = test.stable * (1.0 + setting)
        worse_by = f"{effect:+.1%} rise"
    failed = test.p_value < config.alpha and effect > setting
    statistic = _PERFORMANCE_TESTS.get(test.metric, test.metric)
    summary = (
        f"{test.metric} {test.canary:.4f} vs stable {test.stable:.4f} ({worse_by}; floor {setting:g}), "
        f"p={test.p_value:.2g} on {test.n_canary}/{test.n_stable} labelled rows"
    )
    return _plain(
        "performance",
        Outcome.FAIL if failed else Outcome.PASS,
        summary + (f" < {config.alpha:g}" if failed else ""),
        value=test.canary,
        bound=bound,
        baseline=test.stable,
        p_value=test.p_value,
        n_canary=test.n_canary,
        n_stable=test.n_stable,
        min_samples=config.min_labelled,
        statistic=statistic,
    )


def _gpu(samples: state_mod.LatencySamples) -> np.ndarray | None:
    return samples.gpu_latency_ms


def _e2e(samples: state_mod.LatencySamples) -> np.ndarray | None:
    return samples.latency_ms


TABLE: tuple[Check, ...] = (
    Check("error_rate", "max_error_rate", _error_rate, needs_stable=False),
    Check("error_rate_vs_stable", "max_error_rate_increase", _error_rate_vs_stable, needs_stable=True),
    Check(
        "gpu_latency_p95_vs_stable",
        "max_gpu_latency_regression",
        _latency(_gpu, lambda s: s.gpu_latency_p95_ms, relative=True),
        needs_stable=True,
    ),
    Check(
        "gpu_latency_p95_slo",
        "gpu_p95_slo_ms",
        _latency(_gpu, lambda s: s.gpu_latency_p95_ms, relative=False),
        needs_stable=False,
    ),
    Check(
        "latency_p95_vs_stable",
        "max_latency_regression",
        _latency(_e2e, lambda s: s.latency_p95_ms, relative=True),
        needs_stable=True,
    ),
    Check(
        "latency_p95_slo",
        "latency_p95_slo_ms",
        _latency(_e2e, lambda s: s.latency_p95_ms, relative=False),
        needs_stable=False,
    ),
    Check("data_drift", "max_data_drift_share", _drift_share(lambda o: o.data_drift), needs_stable=False),
    Check(
        "prediction_drift",
        "max_prediction_drift_share",
        _drift_share(lambda o: o.prediction_drift),
        needs_stable=False,
    ),
    Check("performance", "performance_tolerance", _performance, needs_stable=True),
)

CHECK_NAMES = tuple(check.name for check in TABLE)


def enabled(checks: config_mod.CanaryChecks) -> tuple[Check, ...]:
    return tuple(check for check in TABLE if getattr(checks, check.setting) is not None)


def needs_stable(checks: config_mod.CanaryChecks) -> bool:
    return any(check.needs_stable for check in enabled(checks))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def evaluate(inputs: Inputs, config: config_mod.CanaryConfig) -> tuple[state_mod.CheckResult, ...]:
    """One result per enabled check, in table order, each named and with its statistic."""
    results = []
    for check in enabled(config.checks):
        setting = float(getattr(config.checks, check.setting))
        found = check.judge(inputs, setting, config)
        result = _result(check.name, found) if isinstance(found, judge.Evidence) else found
        results.append(
            dataclasses.replace(
                result, name=check.name, value=_finite(result.value), bound=_finite(result.bound)
            )
        )
    return tuple(results)

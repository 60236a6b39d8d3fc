"""Every canary check in one table; one function evaluates them all.

A row names the canary's number, the setting that bounds it, how the bound follows from that
setting (and the stable version's number, for relative checks), and which side is better. A
setting left null switches its row off. A row whose number is missing this interval (no GPU
timings, no labels yet) passes with a note: absent data is "not measured", never a failure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from actions.canary import config as config_mod
from actions.canary import state as state_mod


@dataclasses.dataclass(frozen=True)
class Inputs:
    canary: state_mod.VersionSummary
    stable: state_mod.VersionSummary | None  # this interval's, or the last one with enough data
    observations: state_mod.Observations


Number = Callable[[Inputs], float | None]
Bound = Callable[[float, Inputs], float | None]


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    setting: str  # field of CanaryChecks; null there = off
    value: Number
    bound: Bound
    needs_stable: bool
    higher_is_better: Callable[[Inputs], bool] = lambda _inputs: False


def _stable(read: Callable[[state_mod.VersionSummary], float | None]) -> Callable[[Inputs], float | None]:
    return lambda inputs: read(inputs.stable) if inputs.stable is not None else None


def _relative(stable_value: Callable[[Inputs], float | None]) -> Bound:
    def bound(setting: float, inputs: Inputs) -> float | None:
        baseline = stable_value(inputs)
        return None if baseline is None else baseline * (1.0 + setting)

    return bound


def _added(stable_value: Callable[[Inputs], float | None]) -> Bound:
    def bound(setting: float, inputs: Inputs) -> float | None:
        baseline = stable_value(inputs)
        return None if baseline is None else baseline + setting

    return bound


def _absolute(setting: float, _inputs: Inputs) -> float:
    return setting


def _performance_bound(setting: float, inputs: Inputs) -> float | None:
    stable = inputs.stable.performance if inputs.stable is not None else None
    if stable is None:
        return None
    return stable - setting if inputs.observations.performance_higher_is_better else stable + setting


def _drift_share(drift: Callable[[state_mod.Observations], state_mod.DriftSummary | None]) -> Number:
    def share(inputs: Inputs) -> float | None:
        summary = drift(inputs.observations)
        return None if summary is None else summary.share

    return share


TABLE: tuple[Check, ...] = (
    Check("error_rate", "max_error_rate", lambda i: i.canary.error_rate, _absolute, needs_stable=False),
    Check(
        "error_rate_vs_stable",
        "max_error_rate_increase",
        lambda i: i.canary.error_rate,
        _added(_stable(lambda s: s.error_rate)),
        needs_stable=True,
    ),
    Check(
        "gpu_latency_p95_vs_stable",
        "max_gpu_latency_regression",
        lambda i: i.canary.gpu_latency_p95_ms,
        _relative(_stable(lambda s: s.gpu_latency_p95_ms)),
        needs_stable=True,
    ),
    Check(
        "gpu_latency_p95_slo",
        "gpu_p95_slo_ms",
        lambda i: i.canary.gpu_latency_p95_ms,
        _absolute,
        needs_stable=False,
    ),
    Check(
        "latency_p95_vs_stable",
        "max_latency_regression",
        lambda i: i.canary.latency_p95_ms,
        _relative(_stable(lambda s: s.latency_p95_ms)),
        needs_stable=True,
    ),
    Check(
        "latency_p95_slo",
        "latency_p95_slo_ms",
        lambda i: i.canary.latency_p95_ms,
        _absolute,
        needs_stable=False,
    ),
    Check(
        "data_drift",
        "max_data_drift_share",
        _drift_share(lambda o: o.data_drift),
        _absolute,
        needs_stable=False,
    ),
    Check(
        "prediction_drift",
        "max_prediction_drift_share",
        _drift_share(lambda o: o.prediction_drift),
        _absolute,
        needs_stable=False,
    ),
    Check(
        "performance",
        "performance_tolerance",
        lambda i: i.canary.performance,
        _performance_bound,
        needs_stable=True,
        higher_is_better=lambda i: i.observations.performance_higher_is_better,
    ),
)

CHECK_NAMES = tuple(check.name for check in TABLE)


def enabled(checks: config_mod.CanaryChecks) -> tuple[Check, ...]:
    return tuple(check for check in TABLE if getattr(checks, check.setting) is not None)


def needs_stable(checks: config_mod.CanaryChecks) -> bool:
    return any(check.needs_stable for check in enabled(checks))


def _known(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def evaluate(inputs: Inputs, checks: config_mod.CanaryChecks) -> tuple[state_mod.CheckResult, ...]:
    """One result per enabled check, in table order."""
    results = []
    for check in enabled(checks):
        setting = float(getattr(checks, check.setting))
        value = _known(check.value(inputs))
        if value is None:
            results.append(state_mod.CheckResult(check.name, True, note="not measured this interval"))
            continue
        bound = _known(check.bound(setting, inputs))
        if bound is None:
            results.append(
                state_mod.CheckResult(
                    check.name, True, value=value, note="no stable baseline to compare with"
                )
            )
            continue
        higher_is_better = check.higher_is_better(inputs)
        passed = value >= bound if higher_is_better else value <= bound
        relation = ">=" if higher_is_better else "<="
        results.append(
            state_mod.CheckResult(
                check.name,
                passed,
                value=value,
                bound=bound,
                note=f"needs {value:.6g} {relation} {bound:.6g} ({check.setting}={setting:g})",
            )
        )
    return tuple(results)

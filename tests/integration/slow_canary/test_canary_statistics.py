"""The canary judge over many seeds, through the real detectors: how often an equal canary fails
(A/A), and how fast a slower one is rolled back. Pure computation, but seconds of it, so it lives
with the slow tests; the rates it measures are printed for the record (`pytest -s`).
"""

from __future__ import annotations

import numpy as np
import pytest

from actions.canary import checks as checks_mod
from actions.canary import config as config_mod
from actions.canary import observe
from actions.canary import state as state_mod
from actions.canary import step as step_mod
from tests.support.canary import factories as f
from tests.support.canary.windows import make_window

SEEDS = 200
# An analysis at a 10% step of a model serving 50 requests/s for the default 300 s interval sees
# about 1 500 canary and 13 500 stable requests; labels come back for a fifth of them.
CANARY_ROWS = 1500
STABLE_ROWS = 13_500
LABELLED_SHARE = 0.2


def observations_for(
    rng: np.random.Generator, config: config_mod.CanaryConfig, *, gpu_slowdown: float = 1.0
) -> state_mod.Observations:
    """One analysis's data: both versions' windows from the same generator, the canary's GPU
    latency scaled by ``gpu_slowdown``; labels for a fifth of the requests, equally accurate."""
    canary = make_window(rng, CANARY_ROWS, version="2", gpu_slowdown=gpu_slowdown)
    stable = make_window(rng, STABLE_ROWS, version="1")
    canary_labelled = make_window(rng, int(CANARY_ROWS * LABELLED_SHARE), version="2", accuracy=0.9)
    stable_labelled = make_window(rng, int(STABLE_ROWS * LABELLED_SHARE), version="1", accuracy=0.9)
    return observe.build_observations(
        canary,
        stable,
        config,
        canary_labelled=canary_labelled,
        stable_labelled=stable_labelled,
        labels_expected=True,
    )


def analysis(rng: np.random.Generator, config: config_mod.CanaryConfig) -> tuple[state_mod.CheckResult, ...]:
    observations = observations_for(rng, config)
    assert observations.canary is not None
    inputs = checks_mod.Inputs(observations.canary, observations.stable, observations)
    return checks_mod.evaluate(inputs, config)


def test_equal_canaries_fail_an_analysis_no_more_often_than_alpha_per_check() -> None:
    config = config_mod.CanaryConfig()
    rng = np.random.default_rng(2026)
    failures: dict[str, int] = {}
    failed_analyses = inconclusive = 0
    for _ in range(SEEDS):
        results = analysis(rng, config)
        failed = [result.name for result in results if result.failed]
        inconclusive += any(result.inconclusive for result in results)
        failed_analyses += bool(failed)
        for name in failed:
            failures[name] = failures.get(name, 0) + 1
    per_analysis = failed_analyses / SEEDS
    # Two failed analyses roll back (max_failed_checks 2); a canary is analysed once per step.
    print(
        f"\nA/A over {SEEDS} seeds: {failed_analyses} failed analyses ({per_analysis:.1%}), by check "
        f"{failures}; {inconclusive} inconclusive; alpha {config.alpha}"
    )
    assert inconclusive == 0  # 1 500 canary requests are enough for every check
    # Per check at most alpha, with three binomial standard errors of slack for 200 seeds.
    slack = 3 * np.sqrt(config.alpha * (1 - config.alpha) / SEEDS)
    for name, count in failures.items():
        assert count / SEEDS <= config.alpha + slack, f"{name} failed {count} of {SEEDS} equal canaries"
    assert per_analysis <= len(checks_mod.enabled(config.checks)) * config.alpha


def test_a_canary_ten_percent_slower_at_p95_is_rolled_back_within_two_analyses() -> None:
    config = config_mod.CanaryConfig()  # a 5% effect floor on the GPU and end-to-end p95
    rng = np.random.default_rng(7)
    analyses_to_rollback = []
    for _ in range(20):
        state = f.started(config)
        now = 0.0
        for count in range(1, 4):
            now += config.analysis_interval_s
            slower = observations_for(rng, config, gpu_slowdown=1.10)
            state, _ = step_mod.step(state, slower, config, now)
            if state.phase is state_mod.Phase.ROLLED_BACK:
                analyses_to_rollback.append(count)
                break
        else:
            pytest.fail(f"not rolled back after 3 analyses: {state.history[-1]}")
    print(
        f"\n10% slower GPU p95: rolled back after {analyses_to_rollback} analyses "
        f"({max(analyses_to_rollback) * config.analysis_interval_s:.0f} s at the default interval)"
    )
    assert max(analyses_to_rollback) <= 2
    # The rollback's reason carries the statistic behind the verdict.
    assert "gpu_latency_p95_vs_stable: p95" in state.reason and "slower with p=" in state.reason

"""The canary judge's statistics: exact binomial rates, bootstrap quantile ratios, minimum samples."""

from __future__ import annotations

import numpy as np
import pytest

from actions.canary import judge
from tests.support.canary import factories as f

Outcome = judge.Outcome


def test_one_error_in_50_against_none_in_5000_is_inconclusive_not_pass() -> None:
    stable_rate = 0 / 5000
    evidence = judge.rate_above(1, 50, stable_rate + 0.01, alpha=0.01, baseline=stable_rate)
    assert evidence.outcome is Outcome.INCONCLUSIVE
    # 459 error-free requests are what it takes to show a rate within 1 point at alpha 0.01.
    assert evidence.min_samples == 459 == judge.min_rate_sample(0.01, 0.01)
    assert "459 requests are needed" in evidence.note and evidence.n_canary == 50


def test_the_minimum_sample_is_where_an_error_free_canary_just_passes() -> None:
    needed = judge.min_rate_sample(0.05, 0.01)
    assert judge.rate_above(0, needed - 1, 0.05, alpha=0.01, baseline=None).outcome is Outcome.INCONCLUSIVE
    passed = judge.rate_above(0, needed, 0.05, alpha=0.01, baseline=None)
    assert passed.outcome is Outcome.PASS and passed.p_value == 1.0
    # ... and the bound's own binomial probability of zero errors there is below alpha.
    assert (1 - 0.05) ** needed < 0.01 <= (1 - 0.05) ** (needed - 1)


def test_a_significantly_high_error_rate_fails_even_below_the_minimum_sample() -> None:
    # 10 errors in 40 requests against a 5% bound: p ~ 1e-4, decisive without 90 requests.
    evidence = judge.rate_above(10, 40, 0.05, alpha=0.01, baseline=None)
    assert evidence.outcome is Outcome.FAIL
    assert evidence.p_value is not None and evidence.p_value < 1e-3
    assert evidence.statistic == "binomial" and "above 5.000%" in evidence.note


def test_a_rate_just_over_the_bound_on_little_data_is_not_a_failure() -> None:
    # 6% observed against 5%: not significant on 500 requests (p ~ 0.17), so it passes.
    evidence = judge.rate_above(30, 500, 0.05, alpha=0.01, baseline=None)
    assert evidence.outcome is Outcome.PASS and evidence.p_value is not None and evidence.p_value > 0.1


def test_ten_percent_slower_at_p95_fails_a_five_percent_floor_and_equal_latency_passes() -> None:
    stable = f.latency_samples(10.0, 5000, seed=1)
    slower = f.latency_samples(11.0, 1000, seed=2)
    same = f.latency_samples(10.0, 1000, seed=3)
    assert stable is not None and slower is not None and same is not None
    failed = judge.quantile_regression(slower, stable, max_regression=0.05, alpha=0.01, min_samples=200)
    assert failed.outcome is Outcome.FAIL, failed.note
    assert failed.p_value is not None and failed.p_value < 0.01
    assert (failed.n_canary, failed.n_stable, failed.statistic) == (1000, 5000, "bootstrap_p95_ratio")
    assert failed.bound == pytest.approx(failed.baseline * 1.05)  # type: ignore[operator]
    passed = judge.quantile_regression(same, stable, max_regression=0.05, alpha=0.01, min_samples=200)
    assert passed.outcome is Outcome.PASS, passed.note


def test_a_regression_under_the_floor_passes_however_significant() -> None:
    stable = f.latency_samples(10.0, 20_000, seed=4)
    slightly = f.latency_samples(10.3, 20_000, seed=5)  # 3% slower, floor 5%
    assert stable is not None and slightly is not None
    evidence = judge.quantile_regression(slightly, stable, max_regression=0.05, alpha=0.01, min_samples=200)
    assert evidence.outcome is Outcome.PASS, evidence.note


def test_few_latency_samples_are_inconclusive_and_a_fixed_reference_needs_no_stable_samples() -> None:
    slow = f.latency_samples(20.0, 150, seed=6)
    assert slow is not None
    few = judge.quantile_regression(slow, 10.0, max_regression=0.05, alpha=0.01, min_samples=200)
    assert few.outcome is Outcome.INCONCLUSIVE and "200 of each are needed" in few.note
    enough = f.latency_samples(20.0, 400, seed=6)
    assert enough is not None
    slo = judge.quantile_regression(enough, 10.0, max_regression=0.0, alpha=0.01, min_samples=200)
    assert slo.outcome is Outcome.FAIL and slo.n_stable is None and slo.baseline == 10.0


def test_bootstrap_verdicts_are_reproducible() -> None:
    canary = np.random.default_rng(7).gamma(2.0, 5.0, 800)
    stable = np.random.default_rng(8).gamma(2.0, 5.0, 3000)
    first = judge.quantile_regression(canary, stable, max_regression=0.05, alpha=0.01, min_samples=200)
    again = judge.quantile_regression(canary, stable, max_regression=0.05, alpha=0.01, min_samples=200)
    assert first == again

"""The statistics behind each canary check: pure functions, seeded, no I/O.

Every check answers pass, fail or inconclusive, the way Kayenta's judge does (a test for a
significant difference, plus an effect-size floor), and with a minimum sample below which it
never passes:

- A check FAILS only when the canary is worse with significance (one-sided, at ``alpha``) AND its
  effect is beyond the check's bound: noise cannot fail a good canary more often than ``alpha``,
  and a real but negligible difference does not fail it at all.
- Below its minimum sample a check is INCONCLUSIVE: it pauses the step, never passes it. A sparse
  error count (1 error in 50 requests) cannot show that a rate is within 1 point of another.
- Otherwise it PASSES.

Rates use the exact binomial test; the minimum sample is the smallest count at which even an
error-free canary could show its rate is within the bound (``ln(alpha) / ln(1 - bound)``: 299
requests for a 1-point bound at alpha 0.05, "the rule of three"). Latency quantiles use a
percentile bootstrap of the canary-to-stable ratio of the quantile (or of the canary's quantile
alone against a fixed number: an SLO, or the last stable baseline once stable traffic is gone).
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]

# Bootstrap samples are capped: the p95 of 5 000 draws is precise to a few percent, and the cost
# stays at milliseconds per check whatever the traffic.
MAX_BOOTSTRAP_SAMPLE = 5_000


class Outcome(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a test found; ``describe`` words it for the audit log and the alert."""

    outcome: Outcome
    statistic: str  # which test: binomial, bootstrap_p95_ratio, ...
    value: float | None  # the canary's number
    baseline: float | None  # what it was compared with
    bound: float | None  # the number the canary's must not exceed (or fall below) to pass
    p_value: float | None
    n_canary: int
    n_stable: int | None
    min_samples: int
    note: str


def min_rate_sample(bound: float, alpha: float) -> int:
    """Requests needed before an error-free canary could show its rate is at most ``bound``."""
    if bound <= 0.0:
        return 1 << 30  # a zero bound can never be shown: the check fails on one error, else waits
    if bound >= 1.0:
        return 1
    return math.ceil(math.log(alpha) / math.log1p(-bound))


def rate_above(errors: int, count: int, bound: float, *, alpha: float, baseline: float | None) -> Evidence:
    """Is the canary's error rate above ``bound``? Exact one-sided binomial test."""
    minimum = min_rate_sample(bound, alpha)
    rate = errors / count if count else None
    # P(X >= errors | count, bound): how surprising so many errors are if the rate were the bound.
    p_value = float(stats.binom.sf(errors - 1, count, min(max(bound, 0.0), 1.0))) if count else None
    where = f"{errors}/{count} errors"
    if p_value is not None and p_value < alpha and rate is not None and rate > bound:
        outcome = Outcome.FAIL
        note = f"{where} ({rate:.3%}) is above {bound:.3%} (binomial p={p_value:.2g} < {alpha:g})"
    elif count < minimum:
        outcome = Outcome.INCONCLUSIVE
        note = f"{where}: {minimum} requests are needed to show a rate within {bound:.3%}"
    else:
        outcome = Outcome.PASS
        shown = "n/a" if p_value is None else f"{p_value:.2g}"
        note = f"{where} ({(rate or 0.0):.3%}) not above {bound:.3%} (binomial p={shown})"
    return Evidence(outcome, "binomial", rate, baseline, bound, p_value, count, None, minimum, note)


def _capped(values: FloatArray, rng: np.random.Generator) -> FloatArray:
    if len(values) <= MAX_BOOTSTRAP_SAMPLE:
        return values
    return rng.choice(values, size=MAX_BOOTSTRAP_SAMPLE, replace=False)


def _bootstrap_quantiles(
    values: FloatArray, quantile: float, resamples: int, rng: np.random.Generator
) -> FloatArray:
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    result: FloatArray = np.quantile(values[picks], quantile, axis=1)
    return result


def quantile_regression(
    canary: FloatArray,
    reference: FloatArray | float,
    *,
    max_regression: float,
    alpha: float,
    min_samples: int,
    resamples: int = 1000,
    quantile: float = 0.95,
    seed: int = 0,
) -> Evidence:
    """Is the canary's ``quantile`` more than ``max_regression`` above the reference's?

    ``reference`` is the stable version's samples, or a fixed number (an SLO with
    ``max_regression`` 0, or the last stable baseline). Fails when the canary's quantile is higher
    with significance (the bootstrap's one-sided ``alpha`` bound of the ratio is above 1) AND the
    ratio itself exceeds ``1 + max_regression``.
    """
    name = f"bootstrap_p{round(quantile * 100)}_ratio"
    rng = np.random.default_rng(seed)
    canary = np.asarray(canary, dtype=np.float64)
    stable: FloatArray | None = None
    baseline: float | None
    if isinstance(reference, np.ndarray):
        stable = np.asarray(reference, dtype=np.float64)
        baseline = float(np.quantile(stable, quantile)) if len(stable) else None
    else:
        baseline = float(reference)
    n_stable = None if stable is None else len(stable)
    value = float(np.quantile(canary, quantile)) if len(canary) else None
    bound = None if baseline is None else baseline * (1.0 + max_regression)
    small = len(canary) < min_samples or (n_stable is not None and n_stable < min_samples)
    if value is None or baseline is None or bound is None or small or baseline <= 0.0:
        counts = f"{len(canary)} canary" + ("" if n_stable is None else f", {n_stable} stable")
        return Evidence(
            Outcome.INCONCLUSIVE, name, value, baseline, bound, None, len(canary), n_stable, min_samples,
            f"{counts} latency samples; {min_samples} of each are needed",
        )  # fmt: skip
    canary_q = _bootstrap_quantiles(_capped(canary, rng), quantile, resamples, rng)
    if stable is None:
        ratios = canary_q / baseline
    else:
        ratios = canary_q / _bootstrap_quantiles(_capped(stable, rng), quantile, resamples, rng)
    # One-sided bootstrap p-value of "the canary is no slower": the share of resamples at or below 1.
    p_value = float((1 + np.sum(ratios <= 1.0)) / (1 + resamples))
    lower = float(np.quantile(ratios, alpha))
    ratio = value / baseline
    summary = (
        f"p{round(quantile * 100)} {value:.4g} vs {baseline:.4g} "
        f"(x{ratio:.3f}; bound x{1 + max_regression:.3f})"
    )
    if lower > 1.0 and ratio > 1.0 + max_regression:
        outcome = Outcome.FAIL
        note = (
            f"{summary}: slower with p={p_value:.2g} < {alpha:g} (ratio >= x{lower:.3f} at {1 - alpha:.0%})"
        )
    else:
        outcome = Outcome.PASS
        note = f"{summary}: p={p_value:.2g}"
    return Evidence(outcome, name, value, baseline, bound, p_value, len(canary), n_stable, min_samples, note)

"""p-values of the numeric two-sample tests, exactly as scipy and Evidently compute them.

Also the one-sided tests of a rate against a reference rate (error share, data-quality shares).

``ks_p_value``: ``scipy.stats.ks_2samp(method="auto")``'s p-value from a statistic already
computed on the merged sort (exact path up to ``KS_EXACT_MAX_N`` rows, vectorised for equal
sizes); ``mmd_p_value``: Evidently's permutation test with an RBF kernel. ``detectors.stattests``
calls them; the parity tests compare both with the originals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
from scipy import special, stats
from scipy.stats import _stats_py

FloatArray = npt.NDArray[np.float64]

KS_EXACT_MAX_N = 10_000  # scipy ks_2samp(method="auto"): exact p-value up to this size
MMD_PERMUTATIONS = 100


# ----- K-S p-value ----------------------------------------------------------------------------

# scipy's own exact-path helper for unequal sample sizes (compiled): calling it keeps the p-value
# bit-identical to ks_2samp without re-sorting both samples. Private, so fall back to the public
# function if it ever moves.
_exact_ks = getattr(_stats_py, "_attempt_exact_2kssamp", None)


def _ks_equal_sizes_tail(n: int, h: int) -> float:
    """P(D >= h/n) for two samples of n rows: scipy's ``_compute_prob_outside_square``, vectorised.

    scipy evaluates ``2 * A0 * (1 - A1 * (1 - A2 * ...))`` with a Python loop over about n + h
    terms (7 ms at n = 10k, h = 1); the same terms as one (n // h + 1) x h array and an
    alternating sum of their running products agree with it to ~1e-14 relative.
    """
    shift = np.arange(n // h + 1, dtype=np.float64)[:, None] * h
    step = np.arange(h, dtype=np.float64)
    terms = np.cumprod(np.prod((n - shift - step) / (n + shift + step + 1.0), axis=1))
    terms[1::2] *= -1.0
    # Smallest terms first: the sum loses less to rounding.
    return 2.0 * float(np.sum(terms[::-1]))


def _ks_exact(statistic: float, n_ref: int, n_cur: int) -> tuple[bool, float, float]:
    """(success, statistic rounded to the lattice, p-value) as scipy's exact path gives them."""
    if n_ref != n_cur:
        assert _exact_ks is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            success, rounded, prob = _exact_ks(n_ref, n_cur, math.gcd(n_ref, n_cur), statistic, "two-sided")
        return bool(success), float(rounded), float(prob)
    h = int(np.round(statistic * n_ref))
    rounded = h / n_ref
    if h == 0:
        return True, rounded, 1.0
    prob = _ks_equal_sizes_tail(n_ref, h)
    # scipy gives up on the exact value outside [0, 1] (rounding) and uses the asymptotic one.
    return 0.0 <= prob <= 1.0, rounded, prob


def ks_p_value(
    statistic: float, n_ref: int, n_cur: int, ref: FloatArray, cur: FloatArray
) -> tuple[float, float]:
    """(p-value, statistic) as ``scipy.stats.ks_2samp(method="auto")`` gives them."""
    if _exact_ks is None:
        result = stats.ks_2samp(ref, cur)
        return float(result.pvalue), float(result.statistic)
    if max(n_ref, n_cur) <= KS_EXACT_MAX_N:
        success, statistic, prob = _ks_exact(statistic, n_ref, n_cur)
        if success:
            return min(max(prob, 0.0), 1.0), statistic
    larger, smaller = sorted([float(n_ref), float(n_cur)], reverse=True)
    effective_n = larger * smaller / (larger + smaller)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(effective_n)), 0, 1)), float(statistic)


# ----- MMD ------------------------------------------------------------------------------------


def mmd_p_value(ref: FloatArray, cur: FloatArray, rng: np.random.RandomState) -> tuple[float, float]:
    """(permutation p-value, MMD^2) with Evidently's RBF kernel (median heuristic on reference)."""
    samples = np.concatenate((ref, cur))
    squared = (samples[:, None] - samples[None, :]) ** 2
    n_ref = ref.shape[0]
    ref_block = squared[:n_ref, :n_ref]
    sigma = float((0.5 * np.percentile(ref_block.ravel(), 50, method="nearest")) ** 0.5) or 0.5**0.5
    kernel = np.exp(-squared / (2.0 * sigma**2))
    np.fill_diagonal(kernel, 0.0)

    def mmd(is_ref: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # is_ref: (N, k) 0/1 columns, one per labelling; block sums via two matrix products.
        is_cur = 1.0 - is_ref
        k_ref = kernel @ is_ref
        n_x = is_ref[:, 0].sum()
        n_y = is_cur[:, 0].sum()
        xx = np.einsum("ij,ij->j", is_ref, k_ref)
        yy = np.einsum("ij,ij->j", is_cur, kernel @ is_cur)
        xy = np.einsum("ij,ij->j", is_cur, k_ref)
        result: npt.NDArray[np.float64] = (
            xx / (n_x * (n_x - 1)) + yy / (n_y * (n_y - 1)) - 2.0 * xy / (n_x * n_y)
        )
        return result

    observed_labels = np.zeros((samples.shape[0], 1))
    observed_labels[:n_ref, 0] = 1.0
    observed = float(mmd(observed_labels)[0])
    permuted = np.zeros((samples.shape[0], MMD_PERMUTATIONS))
    for column in range(MMD_PERMUTATIONS):
        permuted[rng.permutation(samples.shape[0])[:n_ref], column] = 1.0
    return float(np.mean(observed <= mmd(permuted))), observed


def subsample(values: FloatArray, limit: int, rng: np.random.Generator) -> FloatArray:
    if values.shape[0] <= limit:
        return values
    return np.sort(rng.choice(values, size=limit, replace=False))


# ----- entry points -------------------------------------------------------------------------


# ----- rates ------------------------------------------------------------------------------------


def two_proportion_greater(rate: float, size: int, reference_rate: float, reference_size: int) -> float:
    """One-sided pooled z-test p-value that ``rate`` exceeds ``reference_rate``."""
    pooled = (rate * size + reference_rate * reference_size) / (size + reference_size)
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / size + 1.0 / reference_size))
    if spread == 0.0:
        return 0.0 if rate > reference_rate else 1.0
    return float(special.ndtr(-(rate - reference_rate) / spread))


def binomial_greater(count: int, size: int, expected: float) -> float:
    """Exact one-sided p-value of ``count`` or more hits in ``size`` draws at rate ``expected``."""
    if count <= 0:
        return 1.0
    return float(stats.binom.sf(count - 1, size, min(max(expected, 0.0), 1.0)))

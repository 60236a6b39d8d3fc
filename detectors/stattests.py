"""Univariate drift tests that give the same numbers as Evidently 0.7 (legacy stattests).

Evidently runs each test through pandas and scipy, one column and one call at a time. Here the
reference column is prepared once (cleaned, sorted, counted) and each window column is sorted once.
Wasserstein (the default test past 1000 reference rows, and every numeric column's effect size)
pairs the two sorted samples through their quantile functions, a gather of rows whose index
depends on the two sizes only. The tests that need both empirical CDFs (K-S, energy distance, the
value counts) read one merged sort of reference and current, built only for them.

Rules copied from the Evidently source (``evidently/legacy/calculations/stattests``):

* NaN and +-inf are dropped from both samples before any test.
* Default test (``registry._get_default_stattest``), ``n_unique`` counted over both samples:
  reference <= 1000 rows: numeric with > 5 unique -> ``ks``; otherwise ``chisquare`` when
  > 2 unique, else ``z``. Reference > 1000 rows: numeric with > 5 unique -> ``wasserstein``,
  otherwise ``jensenshannon``.
* Verdicts: ``ks`` p <= threshold; ``chisquare``, ``z``, ``anderson``, ``mannw``,
  ``empirical_mmd`` p < threshold; ``ed`` distance > threshold; the other distances >= threshold.
* Binned tests (``psi``, ``kl_div``, ``jensenshannon``) use Sturges bins over both samples
  for a numeric column whose *reference* has > 20 unique values, else one bin per value; ``psi``
  and ``kl_div`` replace empty bins by a small share, ``jensenshannon`` does not.
* Wasserstein is divided by ``max(std(reference), 0.001)`` (population std).
* ``z`` compares the share of the smallest value; its p-value is ``2 * (1 - Phi(|z|))``.
* ``mannw`` is one-sided (``alternative="less"``) as in Evidently.

Known property kept for parity: ``chisquare`` is Evidently's goodness-of-fit test, which takes the
reference shares as exact; with a window not much smaller than the reference it fires more often
than its level (measured: 11.5% at p < 0.05 with 800 reference and 300 current rows, 3 values).

Differences from Evidently, on purpose: an empty sample (all values missing) is reported, not an
error; ``empirical_mmd`` draws its 100 permutations from a seeded generator (Evidently uses the
global NumPy one, unseeded) and caps each sample at ``MMD_MAX_SAMPLES`` rows (its kernel matrix
is quadratic in memory).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from detectors import noise_floor, pvalues

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SMALL_REFERENCE_ROWS = 1000  # Evidently: reference <= 1000 rows -> p-value tests
FEW_UNIQUE_VALUES = 5  # Evidently: <= 5 unique values -> treated as categorical
BINARY_VALUES = 2
BINNING_UNIQUE_VALUES = 20  # Evidently: reference with > 20 unique values -> Sturges bins
WASSERSTEIN_MIN_NORM = 0.001
MMD_MAX_SAMPLES = 2000


class ColumnKind(enum.StrEnum):
    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"


class Verdict(enum.StrEnum):
    """How the score is compared with the threshold (Evidently is not uniform about it)."""

    P_AT_MOST = "p_at_most"  # drift when score <= threshold
    P_BELOW = "p_below"  # drift when score < threshold
    DISTANCE_AT_LEAST = "distance_at_least"  # drift when score >= threshold
    DISTANCE_ABOVE = "distance_above"  # drift when score > threshold


@dataclasses.dataclass(frozen=True)
class StatTest:
    name: str  # Evidently's registered name, accepted in configs
    display_name: str  # Evidently's display name (what its report shows)
    kinds: frozenset[ColumnKind]
    default_threshold: float
    verdict: Verdict

    @property
    def is_p_value(self) -> bool:
        return self.verdict in (Verdict.P_AT_MOST, Verdict.P_BELOW)

    def is_drift(self, score: float, threshold: float) -> bool:
        """NaN scores are never drift (no evidence either way)."""
        if math.isnan(score):
            return False
        if self.verdict is Verdict.P_AT_MOST:
            return score <= threshold
        if self.verdict is Verdict.P_BELOW:
            return score < threshold
        if self.verdict is Verdict.DISTANCE_AT_LEAST:
            return score >= threshold
        return score > threshold


_BOTH = frozenset({ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL})
_NUM = frozenset({ColumnKind.NUMERICAL})
_CAT = frozenset({ColumnKind.CATEGORICAL})

STATTESTS: Mapping[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("ks", "K-S p_value", _NUM, 0.05, Verdict.P_AT_MOST),
        # Evidently registers chisquare and z for categorical columns only, but picks them itself
        # for numeric columns with few values; both kinds are accepted here.
        StatTest("chisquare", "chi-square p_value", _BOTH, 0.05, Verdict.P_BELOW),
        StatTest("z", "Z-test p_value", _BOTH, 0.05, Verdict.P_BELOW),
        StatTest("wasserstein", "Wasserstein distance (normed)", _NUM, 0.1, Verdict.DISTANCE_AT_LEAST),
        StatTest("jensenshannon", "Jensen-Shannon distance", _BOTH, 0.1, Verdict.DISTANCE_AT_LEAST),
        StatTest("psi", "PSI", _BOTH, 0.1, Verdict.DISTANCE_AT_LEAST),
        StatTest("kl_div", "Kullback-Leibler divergence", _BOTH, 0.1, Verdict.DISTANCE_AT_LEAST),
        StatTest("hellinger", "Hellinger distance", _BOTH, 0.1, Verdict.DISTANCE_AT_LEAST),
        StatTest("anderson", "Anderson-Darling", _NUM, 0.1, Verdict.P_BELOW),
        StatTest("mannw", "Mann-Whitney U-rank test", _NUM, 0.05, Verdict.P_BELOW),
        StatTest("ed", "Energy-distance", _NUM, 0.1, Verdict.DISTANCE_ABOVE),
        StatTest("empirical_mmd", "empirical_mmd", _NUM, 0.1, Verdict.P_BELOW),
    )
}


class UnknownStatTestError(ValueError):
    pass


def get(name: str, kind: ColumnKind | None = None) -> StatTest:
    """The test called ``name``; the error lists valid names (and kinds) for a bad one."""
    try:
        test = STATTESTS[name]
    except KeyError:
        raise UnknownStatTestError(
            f"unknown stattest {name!r}; valid names: {', '.join(sorted(STATTESTS))}"
        ) from None
    if kind is not None and kind not in test.kinds:
        valid = sorted(n for n, t in STATTESTS.items() if kind in t.kinds)
        raise UnknownStatTestError(
            f"stattest {name!r} does not apply to {kind.value} columns; use one of {', '.join(valid)}"
        )
    return test


def default_test(kind: ColumnKind, reference_size: int, n_unique: int) -> StatTest:
    """Evidently's automatic choice; ``n_unique`` counts distinct values of both samples."""
    few_values = kind is ColumnKind.CATEGORICAL or n_unique <= FEW_UNIQUE_VALUES
    if reference_size <= SMALL_REFERENCE_ROWS:
        if not few_values:
            return STATTESTS["ks"]
        return STATTESTS["chisquare"] if n_unique > BINARY_VALUES else STATTESTS["z"]
    return STATTESTS["jensenshannon"] if few_values else STATTESTS["wasserstein"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One test on one column. ``effect_size`` sits beside a p-value so policy can require both."""

    test: StatTest
    score: float
    threshold: float
    drifted: bool
    p_value: float | None
    effect_size: float | None
    extras: Mapping[str, float] = dataclasses.field(default_factory=dict)


# ----- prepared samples --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NumericSample:
    """Finite values, sorted; ``missing`` counts NaN/inf that were dropped."""

    sorted_values: FloatArray
    missing: int

    @property
    def size(self) -> int:
        return int(self.sorted_values.shape[0])

    # Computed on first use: a reference needs them, a current window usually does not.
    @functools.cached_property
    def n_unique(self) -> int:
        ordered = self.sorted_values
        return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if ordered.size else 0

    @functools.cached_property
    def std(self) -> float:
        return float(np.std(self.sorted_values)) if self.sorted_values.size else 0.0


def numeric_sample(values: npt.ArrayLike) -> NumericSample:
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(array)
    kept = array if bool(finite.all()) else array[finite]
    return NumericSample(np.sort(kept), int(array.shape[0] - kept.shape[0]))


@dataclasses.dataclass(frozen=True)
class CategoricalSample:
    """Counts per category; ``missing`` counts None and float NaN."""

    counts: Mapping[Hashable, int]
    size: int
    missing: int

    @property
    def n_unique(self) -> int:
        return len(self.counts)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def categorical_sample(values: Sequence[object] | npt.NDArray[np.object_]) -> CategoricalSample:
    counter: collections.Counter[Hashable] = collections.Counter(
        values.tolist() if isinstance(values, np.ndarray) else values
    )
    missing = 0
    for key in [k for k in counter if _is_missing(k)]:
        missing += counter.pop(key)
    return CategoricalSample(dict(counter), sum(counter.values()), missing)


# ----- the merged sort of two numeric samples ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Merged:
    """Both samples in one sorted array, with each sample's cumulative count at every position.

    Within a run of equal values the counts are complete only at the run's last position; every
    statistic below reads counts there or multiplies them by a zero gap, so ties are exact.
    """

    values: FloatArray
    ref_count: IntArray
    cur_count: IntArray
    run_end: npt.NDArray[np.bool_]
    n_ref: int
    n_cur: int

    @classmethod
    def of(cls, reference: FloatArray, current: FloatArray) -> _Merged:
        n_ref, n_cur = reference.shape[0], current.shape[0]
        both = np.concatenate((reference, current))
        # Two sorted runs: the stable sort (timsort) merges them in linear time.
        order = np.argsort(both, kind="stable")
        values = both[order]
        ref_count = np.cumsum(order < n_ref, dtype=np.int64)
        cur_count = np.arange(1, n_ref + n_cur + 1, dtype=np.int64) - ref_count
        run_end = np.empty(values.shape[0], dtype=np.bool_)
        np.not_equal(values[1:], values[:-1], out=run_end[:-1])
        run_end[-1] = True
        return cls(values, ref_count, cur_count, run_end, n_ref, n_cur)

    @property
    def n_unique(self) -> int:
        return int(np.count_nonzero(self.run_end))

    def cdf_gap(self) -> FloatArray:
        return self.ref_count / self.n_ref - self.cur_count / self.n_cur

    def energy(self) -> float:
        gaps = np.diff(self.values)
        return float(np.sqrt(2) * np.sqrt(np.sum(np.square(self.cdf_gap()[:-1]) * gaps)))

    def ks_statistic(self) -> float:
        at_values = self.cdf_gap()[self.run_end]
        largest = float(at_values.max())
        smallest = min(max(-float(at_values.min()), 0.0), 1.0)
        return smallest if smallest > largest else largest

    def value_counts(self) -> tuple[FloatArray, IntArray, IntArray]:
        """Distinct values of both samples and how often each sample holds each."""
        ends = np.flatnonzero(self.run_end)
        ref = np.diff(self.ref_count[ends], prepend=0)
        cur = np.diff(self.cur_count[ends], prepend=0)
        return self.values[ends], ref, cur


class _Pair:
    """Two sorted samples; their merged sort is built on first use, by the tests that read it."""

    def __init__(self, reference: FloatArray, current: FloatArray) -> None:
        self.reference = reference
        self.current = current

    @functools.cached_property
    def merged(self) -> _Merged:
        return _Merged.of(self.reference, self.current)


# A few pairings (3 arrays of up to n_ref + n_cur entries each; 4.8 MB at 100k + 100k rows).
@functools.lru_cache(maxsize=4)
def quantile_pairing(n_ref: int, n_cur: int) -> tuple[IntArray, IntArray, FloatArray]:
    """Which sorted rows face each other under the two quantile functions, and for how long.

    W1 = integral over u in (0, 1] of |ref_quantile(u) - cur_quantile(u)|: both quantile functions
    are steps at multiples of 1/n_ref and 1/n_cur. On the grid u * n_ref * n_cur every step sits on
    an integer, so the pairing depends on the two sizes only and windows of a fixed size reuse it.
    """
    ref_steps = np.arange(1, n_ref + 1, dtype=np.int64) * n_cur
    cur_steps = np.arange(1, n_cur + 1, dtype=np.int64) * n_ref
    steps = np.sort(np.concatenate((ref_steps, cur_steps)), kind="stable")
    keep = np.empty(steps.shape[0], dtype=np.bool_)
    keep[0] = True
    np.not_equal(steps[1:], steps[:-1], out=keep[1:])
    steps = steps[keep]
    widths = np.diff(steps, prepend=0) / (float(n_ref) * float(n_cur))
    # On (previous step, step] the quantile of a sample of n rows is its row ceil(u * n) - 1.
    return (steps - 1) // n_cur, (steps - 1) // n_ref, widths


def wasserstein(reference: FloatArray, current: FloatArray) -> float:
    """Wasserstein-1 distance of two sorted, non-empty samples (``scipy.stats.wasserstein_distance``).

    Through the quantile functions: no merged sort of both samples, only a gather of rows.
    """
    n_ref, n_cur = int(reference.shape[0]), int(current.shape[0])
    # Not np.dot: BLAS threads cost more than they save on one vector (and contend on busy hosts).
    if n_ref == n_cur:
        return float(np.sum(np.abs(reference - current))) / n_ref
    ref_rows, cur_rows, widths = quantile_pairing(n_ref, n_cur)
    return float(np.sum(np.abs(reference[ref_rows] - current[cur_rows]) * widths))


# ----- counts-based tests (categorical columns, numeric columns with few values) -------------


@dataclasses.dataclass(frozen=True)
class _Counts:
    keys: Sequence[Hashable]
    ref: FloatArray
    cur: FloatArray
    n_ref: int
    n_cur: int

    @classmethod
    def of_categorical(cls, reference: CategoricalSample, current: CategoricalSample) -> _Counts:
        # Sorted, not set order: sums over the keys must not depend on the process's hash seed.
        keys = _sort_keys(list(reference.counts.keys() | current.counts.keys()))
        ref = np.array([reference.counts.get(k, 0) for k in keys], dtype=np.float64)
        cur = np.array([current.counts.get(k, 0) for k in keys], dtype=np.float64)
        return cls(keys, ref, cur, reference.size, current.size)

    @classmethod
    def of_merged(cls, merged: _Merged) -> _Counts:
        values, ref, cur = merged.value_counts()
        return cls(
            values.tolist(), ref.astype(np.float64), cur.astype(np.float64), merged.n_ref, merged.n_cur
        )


def _chisquare(counts: _Counts) -> tuple[float, float, float]:
    """(p-value, chi-square statistic, Cohen's w)."""
    expected = counts.ref * (counts.n_cur / counts.n_ref)
    if len(counts.keys) < BINARY_VALUES:
        return 1.0, 0.0, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.sum((counts.cur - expected) ** 2 / expected))
    p_value = float(special.chdtrc(len(counts.keys) - 1, statistic))
    return p_value, statistic, math.sqrt(statistic / counts.n_cur) if math.isfinite(statistic) else math.inf


def _sort_keys(keys: Sequence[Hashable]) -> list[Hashable]:
    try:
        return sorted(keys)  # type: ignore[type-var]
    except TypeError:  # mixed types: any fixed order will do for the z-test's reference value
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def _z_test(counts: _Counts) -> tuple[float, float, float]:
    """(p-value, z statistic, Cohen's h) for the share of values other than the smallest one."""
    only_ref = np.flatnonzero(counts.ref)
    only_cur = np.flatnonzero(counts.cur)
    if only_ref.size == 1 and only_cur.size == 1 and only_ref[0] == only_cur[0]:
        return 1.0, 0.0, 0.0
    first = counts.keys.index(_sort_keys(counts.keys)[0])
    p_ref = (counts.n_ref - counts.ref[first]) / counts.n_ref
    p_cur = (counts.n_cur - counts.cur[first]) / counts.n_cur
    pooled = (p_ref * counts.n_ref + p_cur * counts.n_cur) / (counts.n_ref + counts.n_cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float(
            (p_ref - p_cur) / np.sqrt(pooled * (1 - pooled) * (1.0 / counts.n_ref + 1.0 / counts.n_cur))
        )
    # Evidently's form 2 * (1 - Phi(|z|)), kept for parity (it underflows to 0 past |z| ~ 8.3).
    p_value = float(2 * (1 - special.ndtr(abs(z))))
    cohens_h = abs(2 * math.asin(math.sqrt(p_ref)) - 2 * math.asin(math.sqrt(p_cur)))
    return p_value, z, cohens_h


def _fill_zeroes(shares: FloatArray) -> FloatArray:
    """Evidently's ``feel_zeroes``: empty bins get a small share so the log terms stay finite."""
    smallest = float(shares[shares != 0].min())
    filled = shares.copy()
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled


def _jensenshannon(ref_share: FloatArray, cur_share: FloatArray) -> float:
    p = ref_share / np.sum(ref_share)
    q = cur_share / np.sum(cur_share)
    m = (p + q) / 2.0
    js = np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))
    return float(np.sqrt(js / 2.0))


def _psi(ref_share: FloatArray, cur_share: FloatArray) -> float:
    ref, cur = _fill_zeroes(ref_share), _fill_zeroes(cur_share)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _kl_div(ref_share: FloatArray, cur_share: FloatArray) -> float:
    ref, cur = _fill_zeroes(ref_share), _fill_zeroes(cur_share)
    return float(np.sum(special.rel_entr(ref / np.sum(ref), cur / np.sum(cur))))


_BINNED: Mapping[str, Callable[[FloatArray, FloatArray], float]] = {
    "jensenshannon": _jensenshannon,
    "psi": _psi,
    "kl_div": _kl_div,
}


def _hellinger_counts(counts: _Counts) -> float:
    total = 0.0
    for ref, cur in zip(
        (counts.ref / counts.n_ref).tolist(), (counts.cur / counts.n_cur).tolist(), strict=True
    ):
        total += math.sqrt(ref * cur)
    return math.sqrt(1 - min(max(total, 0.0), 1.0))


# ----- binning ------------------------------------------------------------------------------


def sturges_edges(low: float, high: float, size: int) -> FloatArray:
    """``np.histogram_bin_edges(x, "sturges")`` from x's min, max and size alone."""
    spread = high - low
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = spread / (np.log2(size) + 1.0)
    n_bins = int(np.ceil((high - low) / width)) if width else 1
    return np.linspace(low, high, n_bins + 1)


def histogram_sorted(sorted_values: FloatArray, edges: FloatArray) -> IntArray:
    """``np.histogram(values, edges)[0]`` for already-sorted values (last bin closed)."""
    cut = np.concatenate(
        (
            np.searchsorted(sorted_values, edges[:-1], "left"),
            np.searchsorted(sorted_values, edges[-1:], "right"),
        )
    )
    return np.diff(cut).astype(np.int64)


def _hellinger_numeric(merged: _Merged, reference: FloatArray, current: FloatArray) -> float:
    distinct = merged.values[merged.run_end]
    edges = sturges_edges(float(distinct[0]), float(distinct[-1]), int(distinct.shape[0]))
    widths = np.diff(edges)
    ref_hist = histogram_sorted(reference, edges)
    cur_hist = histogram_sorted(current, edges)
    ref_density = ref_hist / widths / ref_hist.sum()
    cur_density = cur_hist / widths / cur_hist.sum()
    bin_width = (edges.max() - edges.min()) / (edges.shape[0] - 1)
    total = 0.0
    for ref, cur in zip(ref_density.tolist(), cur_density.tolist(), strict=True):
        total += math.sqrt(ref * cur) * bin_width
    return math.sqrt(1 - min(max(total, 0.0), 1.0))


def _binned_shares(
    reference: NumericSample, current: NumericSample, pair: _Pair
) -> tuple[FloatArray, FloatArray]:
    """Shares per Sturges bin over both samples, or per value when the reference has few values."""
    ref, cur = reference.sorted_values, current.sorted_values
    if reference.n_unique > BINNING_UNIQUE_VALUES:
        low, high = min(ref[0], cur[0]), max(ref[-1], cur[-1])
        edges = sturges_edges(float(low), float(high), reference.size + current.size)
        return histogram_sorted(ref, edges) / reference.size, histogram_sorted(cur, edges) / current.size
    counts = _Counts.of_merged(pair.merged)
    return counts.ref / counts.n_ref, counts.cur / counts.n_cur


def _numeric_test(
    test_name: str | None, reference: NumericSample, pair: _Pair, extras: dict[str, float]
) -> StatTest:
    if test_name:
        return get(test_name, ColumnKind.NUMERICAL)
    if reference.n_unique > FEW_UNIQUE_VALUES:
        # Both samples together have even more distinct values: choose without counting them,
        # which would cost as much as the default test itself.
        return default_test(ColumnKind.NUMERICAL, reference.size, reference.n_unique)
    extras["n_unique"] = float(pair.merged.n_unique)
    return default_test(ColumnKind.NUMERICAL, reference.size, pair.merged.n_unique)


def numeric(
    reference: NumericSample,
    current: NumericSample,
    test_name: str | None = None,
    threshold: float | None = None,
    seed: int = 0,
) -> Outcome:
    """Compare two non-empty numeric samples with ``test_name`` (Evidently's choice when None).

    ``extras["n_unique"]`` (distinct values of both samples, the input of Evidently's choice) is
    reported when the choice needed it, i.e. when the reference has few distinct values.
    """
    ref, cur = reference.sorted_values, current.sorted_values
    pair = _Pair(ref, cur)
    extras: dict[str, float] = {}
    test = _numeric_test(test_name, reference, pair, extras)
    limit = test.default_threshold if threshold is None else threshold
    normed_wasserstein = wasserstein(ref, cur) / max(reference.std, WASSERSTEIN_MIN_NORM)
    p_value: float | None = None
    effect: float | None = normed_wasserstein
    if test.name == "wasserstein":
        score = normed_wasserstein
    elif test.name == "ks":
        p_value, statistic = pvalues.ks_p_value(
            pair.merged.ks_statistic(), reference.size, current.size, ref, cur
        )
        score = p_value
        extras["ks_statistic"] = statistic
    elif test.name == "ed":
        score = pair.merged.energy()
    elif test.name in ("chisquare", "z"):
        p_value, statistic, effect = (_chisquare if test.name == "chisquare" else _z_test)(
            _Counts.of_merged(pair.merged)
        )
        score = p_value
        extras["statistic"] = statistic
    elif test.name in _BINNED:
        score = _BINNED[test.name](*_binned_shares(reference, current, pair))
    elif test.name == "hellinger":
        score = _hellinger_numeric(pair.merged, ref, cur)
    elif test.name == "anderson":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.anderson_ksamp([ref, cur])
        p_value = score = float(result[2])
        extras["statistic"] = float(result[0])
    elif test.name == "mannw":
        result = stats.mannwhitneyu(x=ref, y=cur, alternative="less")
        p_value = score = float(result.pvalue)
        extras["statistic"] = float(result.statistic)
    else:  # empirical_mmd
        sampler = np.random.default_rng(seed)
        # RandomState: the same permutations as Evidently's np.random after np.random.seed(seed).
        p_value, statistic = pvalues.mmd_p_value(
            pvalues.subsample(ref, MMD_MAX_SAMPLES, sampler),
            pvalues.subsample(cur, MMD_MAX_SAMPLES, sampler),
            np.random.RandomState(seed),
        )
        score = p_value
        extras["statistic"] = statistic
    if not test.is_p_value and test.name != "wasserstein":
        extras["normed_wasserstein"] = normed_wasserstein
        effect = score
    return Outcome(test, float(score), limit, test.is_drift(float(score), limit), p_value, effect, extras)


def categorical(
    reference: CategoricalSample,
    current: CategoricalSample,
    test_name: str | None = None,
    threshold: float | None = None,
) -> Outcome:
    """Compare two non-empty categorical samples with ``test_name`` (Evidently's choice when None)."""
    counts = _Counts.of_categorical(reference, current)
    test = (
        get(test_name, ColumnKind.CATEGORICAL)
        if test_name
        else default_test(ColumnKind.CATEGORICAL, reference.size, len(counts.keys))
    )
    limit = test.default_threshold if threshold is None else threshold
    extras: dict[str, float] = {"n_unique": float(len(counts.keys))}
    if test_name is None and threshold is None and test.name == "jensenshannon":
        # Never below chance (detectors.noise_floor): 0.1 is, for long-tailed categoricals.
        noise = noise_floor.jensenshannon(counts.ref, counts.n_cur)
        extras["noise_floor"] = noise
        limit = max(limit, noise)
    p_value: float | None = None
    if test.name in ("chisquare", "z"):
        p_value, statistic, effect = (_chisquare if test.name == "chisquare" else _z_test)(counts)
        score = p_value
        extras["statistic"] = statistic
    elif test.name in _BINNED:
        score = _BINNED[test.name](counts.ref / counts.n_ref, counts.cur / counts.n_cur)
        effect = score
    else:  # hellinger
        score = effect = _hellinger_counts(counts)
    return Outcome(test, float(score), limit, test.is_drift(float(score), limit), p_value, effect, extras)

"""Streaming change detectors (ADWIN, DDM, Page-Hinkley) that consume a whole array per call.

Each class reproduces River 0.26's detector of the same name decision for decision: fed the same
values one by one, River flags a change at exactly the indices ``update_many`` returns
(tests/unit/detectors/test_river_equivalence.py checks this on River's own synthetic streams). The
floating-point operations are done in River's order, so the agreement is exact, not approximate.

Why not call River: its per-value Python call costs about a microsecond, and the agent sees
whole windows at once. Here the work is vectorised over the window:

* ADWIN keeps River's exponential-histogram buckets, but the buckets a window creates are built
  level by level with numpy, and every cut at every check point (one per ``clock`` values) is
  evaluated in one array expression. Bucket variances are not kept: River only uses them after it
  has already reported a change, and the detector restarts after every change.
* DDM and Page-Hinkley depend on River's running mean (``mean += (1/n) * (x - mean)``), whose
  rounding cannot be reproduced by a closed form, so that one recurrence runs as a tight scalar
  loop; everything after it (running minima, thresholds) is vectorised.

Like River, a detector that flags a change starts afresh with the next value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Values handled per vectorised step of DDM/Page-Hinkley: bounds the work redone after a change.
_CHUNK = 4096


def _as_values(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("values must be finite; drop NaN/inf rows before calling update_many")
    return array


def _running_mean(values: FloatArray, count: float, mean: float) -> tuple[FloatArray, float, float]:
    """River's ``stats.Mean`` applied value by value; returns the mean after each value."""
    out = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values.tolist()):
        count += 1.0
        mean += (1.0 / count) * (value - mean)
        out[index] = mean
    return out, count, mean


def _changes(
    values: FloatArray, chunk: int, scan: Callable[[FloatArray, int], int], restart: Callable[[], None]
) -> IntArray:
    """Indices into ``values`` where ``scan`` flags a change; the detector restarts after each one.

    ``scan(part, start)`` reads ``part``, at most ``chunk`` values of ``values`` from index
    ``start``, and returns the index in ``part`` of its first change, or -1 having absorbed it all.
    Like River, the detector starts afresh (``restart``) with the value after a change.
    """
    changes: list[int] = []
    start = 0
    while start < len(values):
        part = values[start : start + chunk]
        hit = scan(part, start)
        if hit < 0:
            start += len(part)
            continue
        changes.append(start + hit)
        restart()
        start += hit + 1
    return np.asarray(changes, dtype=np.int64)


@dataclasses.dataclass
class _AdwinState:
    # Bucket totals per level (level i holds sums of 2**i values), oldest first.
    levels: list[FloatArray]
    total: float = 0.0
    variance: float = 0.0
    width: int = 0


class Adwin:
    """ADWIN (Bifet & Gavaldà 2007) with River's bucket compression and check clock."""

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if clock < 1 or max_buckets < 1 or min_window_length < 1 or grace_period < 0:
            raise ValueError(
                "clock, max_buckets and min_window_length must be >= 1 and grace_period >= 0; got "
                f"clock={clock}, max_buckets={max_buckets}, min_window_length={min_window_length}, "
                f"grace_period={grace_period}"
            )
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._state = _AdwinState(levels=[])

    def reset(self) -> None:
        self._state = _AdwinState(levels=[])

    def state(self) -> dict[str, Any]:
        """The buckets and running sums, as plain data (lists and floats)."""
        s = self._state
        return {
            "levels": [level.tolist() for level in s.levels],
            "total": s.total,
            "variance": s.variance,
            "width": s.width,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._state = _AdwinState(
            levels=[np.asarray(level, dtype=np.float64) for level in state["levels"]],
            total=float(state["total"]),
            variance=float(state["variance"]),
            width=int(state["width"]),
        )

    def values_to_next_check(self) -> int:
        """Values until the next check point: a change can only be flagged there."""
        width = self._state.width
        ahead = self.clock - width % self.clock
        while width + ahead <= self.grace_period:
            ahead += self.clock
        return ahead

    @property
    def width(self) -> int:
        """Values in the current adaptive window (since the start or the last change)."""
        return self._state.width

    @property
    def estimation(self) -> float:
        """Mean of the current adaptive window (0 when empty)."""
        return self._state.total / self._state.width if self._state.width else 0.0

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed ``values`` in order; return the indices (into ``values``) where a change was flagged."""
        array = _as_values(values)
        # One scan over all that is left: its check points vectorise across the whole remainder.
        return _changes(array, len(array), lambda rest, _start: self._scan(rest), self.reset)

    def _scan(self, values: FloatArray) -> int:
        """Index of the first change in ``values``, or -1 after absorbing them all into the state."""
        state = self._state
        size = len(values)
        widths = state.width + np.arange(1, size + 1, dtype=np.float64)
        totals = np.cumsum(np.concatenate(([state.total], values)))
        with np.errstate(divide="ignore", invalid="ignore"):
            deviation = values - totals[:-1] / (widths - 1.0)
            increments = (widths - 1.0) * deviation * deviation / widths
        increments[widths == 1.0] = 0.0
        variances = np.cumsum(np.concatenate(([state.variance], increments)))[1:]
        totals = totals[1:]

        candidates = self._level_candidates(values)
        ticks = widths.astype(np.int64)
        steps = np.flatnonzero((ticks % self.clock == 0) & (ticks > self.grace_period)) + 1
        # The last row is the layout after the whole batch: the state kept when nothing fires.
        layout = self._bucket_layout(np.append(steps, size))
        if len(steps):
            hit_row = self._first_cut(candidates, layout, steps, totals, variances)
            if hit_row >= 0:
                return int(steps[hit_row]) - 1

        state.levels = [
            candidates[level][start[-1] : start[-1] + count[-1]].copy()
            for level, (start, count) in enumerate(zip(layout.starts, layout.counts, strict=True))
        ] + state.levels[len(layout.starts) :]
        while state.levels and len(state.levels[-1]) == 0:
            state.levels.pop()
        state.total = float(totals[-1])
        state.variance = float(variances[-1])
        state.width += size
        return -1

    def _level_candidates(self, values: FloatArray) -> list[FloatArray]:
        """Per level touched by ``values``: kept bucket totals, then every bucket they can complete.

        Merges always pair the two oldest buckets of a level and the kept buckets of a level
        start on an even position, so level i+1's new buckets are pairwise sums of level i's.
        """
        kept = self._state.levels
        levels = [np.concatenate((kept[0], values)) if kept else values]
        while len(levels[-1]) >= 2:
            below = levels[-1]
            pairs = len(below) // 2
            merged = below[0 : 2 * pairs : 2] + below[1 : 2 * pairs : 2]
            index = len(levels)
            levels.append(np.concatenate((kept[index], merged)) if index < len(kept) else merged)
        return levels

    def _bucket_layout(self, steps: IntArray) -> _Layout:
        """After each step count: first kept candidate index and bucket count, per changing level.

        A level that reaches max_buckets + 1 merges its two oldest buckets, so after L arrivals
        it has merged ceil((L - max_buckets) / 2) pairs (none while L <= max_buckets). Levels
        above the first one that merges nothing keep their buckets unchanged.
        """
        kept = self._state.levels
        arrivals = steps + (len(kept[0]) if kept else 0)
        starts: list[IntArray] = []
        counts: list[IntArray] = []
        while True:
            merges = np.maximum(0, (arrivals - self.max_buckets + 1) // 2)
            starts.append(2 * merges)
            counts.append(arrivals - 2 * merges)
            # Step counts are sorted and merges grow with them: the last row is the largest.
            if merges[-1] == 0:
                return _Layout(starts=starts, counts=counts)
            level = len(starts)
            arrivals = merges + (len(kept[level]) if level < len(kept) else 0)

    def _first_cut(
        self,
        candidates: list[FloatArray],
        layout: _Layout,
        steps: IntArray,
        totals: FloatArray,
        variances: FloatArray,
    ) -> int:
        """Row of the first check point at which some cut separates two different means."""
        slots = self.max_buckets
        rows = len(steps)
        changing = len(layout.starts)
        kept = self._state.levels
        # Oldest (highest) level first, oldest bucket first within a level: River's cut order.
        fixed = kept[changing:][::-1]
        fixed_sums = np.concatenate([*fixed, np.empty(0)])
        fixed_sizes = np.concatenate(
            [np.full(len(level), float(1 << (len(kept) - 1 - i))) for i, level in enumerate(fixed)]
            + [np.empty(0)]
        )
        order = np.arange(changing - 1, -1, -1)
        flat = np.concatenate(candidates[:changing])
        offsets = np.cumsum([0] + [len(level) for level in candidates[: changing - 1]])
        starts = np.stack(layout.starts)[order, :rows].T
        counts = np.stack(layout.counts)[order, :rows].T
        slot_index = np.arange(slots)
        present = slot_index[None, None, :] < counts[:, :, None]
        index = offsets[order][None, :, None] + starts[:, :, None] + slot_index[None, None, :]
        moving_sums = np.where(present, flat[np.where(present, index, 0)], 0.0).reshape(rows, -1)
        moving_sizes = (present * (2.0**order)[None, :, None]).reshape(rows, -1)
        sums = np.concatenate((np.broadcast_to(fixed_sums, (rows, len(fixed_sums))), moving_sums), axis=1)
        sizes = np.concatenate((np.broadcast_to(fixed_sizes, (rows, len(fixed_sizes))), moving_sizes), axis=1)

        width = (steps + self._state.width).astype(np.float64)
        total = totals[steps - 1]
        variance = variances[steps - 1]
        older_size = np.cumsum(sizes, axis=1)
        newer_size = width[:, None] - older_size
        older_sum = np.cumsum(sums, axis=1)
        # River subtracts bucket by bucket from the total; a running sum of negatives rounds the same.
        newer_sum = np.cumsum(np.concatenate((total[:, None], -sums), axis=1), axis=1)[:, 1:]
        shortest = float(self.min_window_length)
        valid = (sizes > 0) & (older_size >= shortest) & (newer_size >= shortest)
        # A window of one value has no cut; River's ln(ln(1)) is -inf there and decides nothing.
        delta_prime = np.asarray(
            [math.log(2.0 * math.log(w) / self.delta) if w > 1.0 else math.nan for w in width.tolist()]
        )[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_gap = older_sum / older_size - newer_sum / newer_size
            m_recip = 1.0 / (older_size - shortest + 1.0) + 1.0 / (newer_size - shortest + 1.0)
            epsilon = (
                np.sqrt(2.0 * m_recip * (variance / width)[:, None] * delta_prime)
                + 2.0 / 3.0 * delta_prime * m_recip
            )
            cut = valid & (np.abs(mean_gap) > epsilon)
        hits = np.flatnonzero(cut.any(axis=1))
        return int(hits[0]) if len(hits) else -1


@dataclasses.dataclass(frozen=True)
class _Layout:
    starts: list[IntArray]
    counts: list[IntArray]


@dataclasses.dataclass(frozen=True)
class DdmChanges:
    """Indices (into the values given) of flagged changes and of entries into the warning zone."""

    changes: IntArray
    warnings: IntArray
    in_warning: bool


class Ddm:
    """DDM (Gama et al. 2004) on a 0/1 error stream, as River's ``drift.binary.DDM``."""

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        if warm_start < 0 or warning_threshold <= 0 or drift_threshold <= 0:
            raise ValueError(
                "warm_start must be >= 0 and the thresholds > 0; got "
                f"warm_start={warm_start}, warning_threshold={warning_threshold}, "
                f"drift_threshold={drift_threshold}"
            )
        self.warm_start = warm_start
        self.warning_threshold = warning_threshold
        self.drift_threshold = drift_threshold
        self.reset()

    def reset(self) -> None:
        self._count = 0.0
        self._mean = 0.0
        self._p_min = math.nan
        self._s_min = math.nan
        self._ps_min = math.inf
        self._in_warning = False

    _STATE_FIELDS = ("_count", "_mean", "_p_min", "_s_min", "_ps_min", "_in_warning")

    def state(self) -> dict[str, Any]:
        return {name.lstrip("_"): getattr(self, name) for name in self._STATE_FIELDS}

    def load_state(self, state: Mapping[str, Any]) -> None:
        for name in self._STATE_FIELDS:
            setattr(self, name, state[name.lstrip("_")])

    def values_to_next_check(self) -> int:
        """DDM checks at every value."""
        return 1

    @property
    def error_rate(self) -> float:
        return self._mean

    def update_many(self, values: npt.ArrayLike) -> DdmChanges:
        array = _as_values(values)
        if np.any((array != 0.0) & (array != 1.0)):
            raise ValueError("DDM needs a 0/1 error stream (1 = wrong prediction)")
        warnings: list[int] = []

        def scan(chunk: FloatArray, start: int) -> int:
            hit, chunk_warnings = self._scan(chunk)
            warnings.extend(start + w for w in chunk_warnings)
            return hit

        changes = _changes(array, _CHUNK, scan, self.reset)
        return DdmChanges(
            changes=changes, warnings=np.asarray(warnings, dtype=np.int64), in_warning=self._in_warning
        )

    def _scan(self, values: FloatArray) -> tuple[int, list[int]]:
        first_count = self._count
        means, count, mean = _running_mean(values, self._count, self._mean)
        counts = first_count + np.arange(1, len(values) + 1, dtype=np.float64)
        spread = np.sqrt(means * (1.0 - means) / counts)
        level = means + spread
        active = counts > self.warm_start
        # River replaces the minimum when p + s <= the best so far (ties move it forward).
        candidate = np.where(active, level, math.inf)
        best = np.minimum.accumulate(np.concatenate(([self._ps_min], candidate)))[1:]
        improved = active & (candidate <= np.concatenate(([self._ps_min], best[:-1])))
        positions = np.arange(len(values))
        latest = np.maximum.accumulate(np.where(improved, positions, -1))
        has_min = latest >= 0
        p_min = np.where(has_min, means[np.maximum(latest, 0)], self._p_min)
        s_min = np.where(has_min, spread[np.maximum(latest, 0)], self._s_min)
        with np.errstate(invalid="ignore"):
            drift = active & (level > p_min + self.drift_threshold * s_min)
            warning = active & ~drift & (level > p_min + self.warning_threshold * s_min)
        hits = np.flatnonzero(drift)
        end = int(hits[0]) if len(hits) else len(values) - 1
        entered = warning[: end + 1] & ~np.concatenate(([self._in_warning], warning[:end]))
        chunk_warnings = np.flatnonzero(entered).tolist()
        if len(hits):
            return end, chunk_warnings
        self._count, self._mean = count, mean
        last = len(values) - 1
        self._p_min, self._s_min = float(p_min[last]), float(s_min[last])
        self._ps_min = float(best[last])
        if active[last]:
            self._in_warning = bool(warning[last])
        return -1, chunk_warnings


class PageHinkley:
    """Page-Hinkley test with a fading mean, as River's ``drift.PageHinkley``."""

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        if min_instances < 1 or threshold <= 0 or not 0.0 < alpha <= 1.0:
            raise ValueError(
                "min_instances must be >= 1, threshold > 0 and alpha in (0, 1]; got "
                f"min_instances={min_instances}, threshold={threshold}, alpha={alpha}"
            )
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self._count = 0.0
        self._mean = 0.0
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = math.inf
        # River starts the running maximum at -1, not -inf; kept for identical decisions.
        self._max_decrease = -1.0

    _STATE_FIELDS = ("_count", "_mean", "_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")

    def state(self) -> dict[str, Any]:
        return {name.lstrip("_"): getattr(self, name) for name in self._STATE_FIELDS}

    def load_state(self, state: Mapping[str, Any]) -> None:
        for name in self._STATE_FIELDS:
            setattr(self, name, float(state[name.lstrip("_")]))

    def values_to_next_check(self) -> int:
        """Page-Hinkley checks at every value."""
        return 1

    @property
    def mean(self) -> float:
        return self._mean

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        return _changes(_as_values(values), _CHUNK, lambda chunk, _start: self._scan(chunk), self.reset)

    def _scan(self, values: FloatArray) -> int:
        first_count = self._count
        size = len(values)
        increases = np.empty(size, dtype=np.float64)
        decreases = np.empty(size, dtype=np.float64)
        count, mean = self._count, self._mean
        up, down = self._sum_increase, self._sum_decrease
        alpha, delta = self.alpha, self.delta
        for index, value in enumerate(values.tolist()):
            count += 1.0
            mean += (1.0 / count) * (value - mean)
            deviation = value - mean
            up = alpha * up + deviation - delta
            down = alpha * down + deviation + delta
            increases[index] = up
            decreases[index] = down
        lowest = np.minimum.accumulate(np.concatenate(([self._min_increase], increases)))[1:]
        highest = np.maximum.accumulate(np.concatenate(([self._max_decrease], decreases)))[1:]
        counts = first_count + np.arange(1, size + 1, dtype=np.float64)
        rise = increases - lowest
        fall = highest - decreases
        if self.mode == "up":
            fired = rise > self.threshold
        elif self.mode == "down":
            fired = fall > self.threshold
        else:
            fired = (rise > self.threshold) | (fall > self.threshold)
        hits = np.flatnonzero(fired & (counts >= self.min_instances))
        if len(hits):
            return int(hits[0])
        self._count, self._mean = count, mean
        self._sum_increase, self._sum_decrease = up, down
        self._min_increase, self._max_decrease = float(lowest[-1]), float(highest[-1])
        return -1

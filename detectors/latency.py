"""Latency and error-rate detectors, a mergeable quantile sketch, and GPU context from NVML numbers.

Window quantiles are exact (``np.quantile`` over the window's values, linear interpolation).
``QuantileSketch`` is for the scale-out path: sidecars that each see part of the traffic ship
bin counts, and the leader adds them up; its quantiles carry a stated relative error.

A latency regression needs both a one-sided Mann-Whitney test (current slower) and a relative
p95 rise above a floor: with large windows the test alone fires on differences nobody feels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pydantic
from scipy import stats

from detectors import base, pvalues
from detectors import window as window_mod

FloatArray = npt.NDArray[np.float64]
LatencyColumn = Literal["gpu_latency_ms", "latency_ms"]
ALL_COLUMNS: tuple[LatencyColumn, ...] = ("gpu_latency_ms", "latency_ms")
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def window_quantiles(values: FloatArray) -> dict[str, float]:
    """Exact p50/p95/p99 of one window's values (NaN values ignored by the caller)."""
    found = np.quantile(values, [q for _, q in QUANTILES])
    return {name: float(value) for (name, _), value in zip(QUANTILES, found, strict=True)}


class QuantileSketch:
    """Counts over fixed log-spaced bins: any quantile within ``relative_error`` of the true value.

    Bin i holds values in (min_value * g^(i-1), min_value * g^i] with g = (1+e)/(1-e); reporting
    2 * min_value * g^i / (g + 1) for a bin is within a factor (1 +- e) of every value in it.
    Values at or below ``min_value`` (and above ``max_value``) share an end bin and are reported
    as that bound. Two sketches with the same parameters merge by adding counts.
    """

    def __init__(
        self, relative_error: float = 0.01, min_value: float = 0.01, max_value: float = 1.0e6
    ) -> None:
        if not 0.0 < relative_error < 1.0:
            raise ValueError(f"relative_error must be in (0, 1), got {relative_error}")
        if not 0.0 < min_value < max_value:
            raise ValueError(f"need 0 < min_value < max_value, got {min_value} and {max_value}")
        self.relative_error = relative_error
        self.min_value = min_value
        self.max_value = max_value
        self._log_gamma = math.log((1.0 + relative_error) / (1.0 - relative_error))
        top = math.ceil(math.log(max_value / min_value) / self._log_gamma)
        # Bin 0: <= min_value; bins 1..top: the log-spaced range; bin top + 1: > max_value.
        self.counts = np.zeros(top + 2, dtype=np.int64)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add(self, values: npt.ArrayLike) -> None:
        array = np.asarray(values, dtype=np.float64)
        array = array[np.isfinite(array)]
        top = len(self.counts) - 2
        with np.errstate(divide="ignore"):
            index = np.ceil(np.log(array / self.min_value) / self._log_gamma)
        index = np.where(array <= self.min_value, 0, np.where(array > self.max_value, top + 1, index))
        index = np.clip(index, 0, top + 1).astype(np.int64)
        self.counts += np.bincount(index, minlength=len(self.counts))

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """A new sketch holding both sketches' values; parameters must be identical."""
        same = (other.relative_error, other.min_value, other.max_value) == (
            self.relative_error,
            self.min_value,
            self.max_value,
        )
        if not same:
            raise ValueError("only sketches with the same relative_error, min_value and max_value merge")
        merged = QuantileSketch(self.relative_error, self.min_value, self.max_value)
        merged.counts = self.counts + other.counts
        return merged

    def quantile(self, q: float) -> float:
        """The value of rank ceil(q * count) (the lower order statistic), within the relative error."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        total = self.count
        if total == 0:
            return math.nan
        rank = max(1, math.ceil(q * total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return self.min_value
        if index == len(self.counts) - 1:
            return self.max_value
        gamma = math.exp(self._log_gamma)
        return 2.0 * self.min_value * gamma**index / (gamma + 1.0)


def gpu_context(readings: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Summary of NVML readings taken during a window (read by ``agent.nvml``), for result extras.

    Each reading may carry ``utilization_gpu_pct``, ``memory_used_bytes``, ``memory_total_bytes``,
    ``temperature_c`` and ``power_w``; missing or non-finite entries are skipped.
    """
    out: dict[str, float] = {}

    def finite(key: str) -> list[float]:
        values = [float(r[key]) for r in readings if key in r]
        return [v for v in values if math.isfinite(v)]

    utilisation = finite("utilization_gpu_pct")
    if utilisation:
        out["gpu_utilization_mean_pct"] = sum(utilisation) / len(utilisation)
        out["gpu_utilization_max_pct"] = max(utilisation)
    fractions = [
        float(r["memory_used_bytes"]) / float(r["memory_total_bytes"])
        for r in readings
        if r.get("memory_total_bytes", 0.0) > 0 and "memory_used_bytes" in r
    ]
    if fractions:
        out["gpu_memory_used_max_fraction"] = max(fractions)
    for key, name in (("temperature_c", "gpu_temperature_max_c"), ("power_w", "gpu_power_max_w")):
        values = finite(key)
        if values:
            out[name] = max(values)
    return out


class LatencyConfig(base.DetectorConfig):
    columns: list[LatencyColumn] = pydantic.Field(
        default_factory=lambda: list(ALL_COLUMNS),
        description="Latency columns to watch (those absent from a window are skipped).",
    )
    gpu_p95_slo_ms: float | None = pydantic.Field(
        None, gt=0, description="Breach when the window's GPU-latency p95 exceeds this; null = no SLO."
    )
    latency_p95_slo_ms: float | None = pydantic.Field(
        None, gt=0, description="Breach when the window's end-to-end p95 exceeds this; null = no SLO."
    )
    alpha: float = pydantic.Field(
        0.01, gt=0, lt=1, description="Regression needs the one-sided Mann-Whitney p-value below this."
    )
    min_relative_increase: float = pydantic.Field(
        0.20, ge=0, description="Regression also needs p95 up by at least this share of the reference p95."
    )
    min_samples: int = pydantic.Field(20, ge=2, description="Fewer values than this in a column: skipped.")

    def slo_for(self, column: LatencyColumn) -> float | None:
        return self.gpu_p95_slo_ms if column == "gpu_latency_ms" else self.latency_p95_slo_ms


def _finite(values: FloatArray | None) -> tuple[FloatArray, int]:
    if values is None:
        return np.zeros(0), 0
    array = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(array) & (array >= 0)
    return array[keep], int(len(array) - keep.sum())


class LatencyDetector(base.Detector[LatencyConfig], base.NeedsReference):
    """Per-window latency quantiles, SLO breaches and regressions against the reference."""

    name: ClassVar[str] = "latency"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.LATENCY
    config_class: ClassVar[type[base.DetectorConfig]] = LatencyConfig

    def __init__(self, config: LatencyConfig) -> None:
        super().__init__(config)
        self._reference: dict[LatencyColumn, FloatArray] = {}

    def set_reference(self, reference: window_mod.Window) -> None:
        """Optional: without a reference only SLOs are checked."""
        self._reference = {}
        for column in self.config.columns:
            values, _ = _finite(getattr(reference, column))
            if len(values) >= self.config.min_samples:
                self._reference[column] = values

    def reset(self) -> None:
        """Nothing is learned from windows."""

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        results = []
        for column in self.config.columns:
            values, invalid = _finite(getattr(window, column))
            if len(values) >= self.config.min_samples:
                results.append(self._column(window, column, values, invalid))
        if not results:
            raise base.CannotRun(
                f"latency: no column of {self.config.columns} has {self.config.min_samples} valid values"
            )
        worst = max(results, key=lambda r: (r.drifted, r.score / r.threshold if r.threshold else 0.0))
        extras = {f"{r.feature}.{key}": value for r in results for key, value in r.extras.items()}
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic=worst.statistic,
            score=worst.score,
            threshold=worst.threshold,
            drifted=any(r.drifted for r in results),
            p_value=worst.p_value,
            effect_size=worst.effect_size,
            reference_size=worst.reference_size,
            current_size=worst.current_size,
            missing_count=worst.missing_count,
            model_version=window.model_version,
            segment=window.segment,
            details=tuple(results),
            extras=extras,
        )

    def _column(
        self, window: window_mod.Window, column: LatencyColumn, values: FloatArray, invalid: int
    ) -> base.DetectorResult:
        quantiles = window_quantiles(values)
        extras = dict(quantiles)
        p95 = quantiles["p95"]
        thresholds = []
        slo = self.config.slo_for(column)
        breached = slo is not None and p95 > slo
        if slo is not None:
            extras["slo_ms"] = slo
            extras["slo_breach"] = float(breached)
            thresholds.append(slo)
        reference = self._reference.get(column)
        p_value: float | None = None
        rise: float | None = None
        regressed = False
        if reference is not None:
            reference_p95 = float(np.quantile(reference, 0.95))
            rise = p95 / reference_p95 - 1.0 if reference_p95 > 0 else 0.0
            p_value = float(stats.mannwhitneyu(values, reference, alternative="greater").pvalue)
            regressed = p_value < self.config.alpha and rise >= self.config.min_relative_increase
            extras["reference_p95"] = reference_p95
            extras["regression"] = float(regressed)
            thresholds.append(reference_p95 * (1.0 + self.config.min_relative_increase))
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=column,
            statistic="p95_ms",
            score=p95,
            # The tighter of the SLO and the regression bound; 0 when neither applies (no verdict
            # possible, the quantiles are still reported). Infinity would not survive JSON.
            threshold=min(thresholds) if thresholds else 0.0,
            drifted=breached or regressed,
            p_value=p_value,
            effect_size=rise,
            reference_size=len(reference) if reference is not None else 0,
            current_size=len(values),
            missing_count=invalid,
            model_version=window.model_version,
            segment=window.segment,
            extras=extras,
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # Regression needs p < 0.01 and +20% p95: on a stationary stream alarms are rarer than 0.01.
        def make_window(draw: np.random.Generator) -> window_mod.Window:
            return _latency_window(draw, 400, 1.0)

        return base.ConformanceExample({}, _latency_window(rng, 2000, 1.0), make_window, 0.01)


def _latency_window(rng: np.random.Generator, size: int, slowdown: float) -> window_mod.Window:
    gpu = rng.lognormal(mean=math.log(8.0), sigma=0.3, size=size) * slowdown
    total = gpu + rng.lognormal(mean=math.log(5.0), sigma=0.5, size=size)
    return window_mod.Window(features={}, gpu_latency_ms=gpu, latency_ms=total)


class ErrorRateConfig(base.DetectorConfig):
    alpha: float = pydantic.Field(
        0.01, gt=0, lt=1, description="Drift needs the one-sided two-proportion p-value below this."
    )
    min_increase: float = pydantic.Field(
        0.01, ge=0, le=1, description="Drift also needs the error share up by at least this (absolute)."
    )
    max_error_rate: float | None = pydantic.Field(
        None, ge=0, le=1, description="Breach whenever the window's error share exceeds this; null = off."
    )
    min_samples: int = pydantic.Field(20, ge=1, description="Fewer records than this: no verdict.")


class ErrorRateDetector(base.Detector[ErrorRateConfig], base.NeedsReference):
    """Share of records with status 'error' against the reference's share."""

    name: ClassVar[str] = "error_rate"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.ERRORS
    config_class: ClassVar[type[base.DetectorConfig]] = ErrorRateConfig

    def __init__(self, config: ErrorRateConfig) -> None:
        super().__init__(config)
        self._reference: FloatArray | None = None

    def set_reference(self, reference: window_mod.Window) -> None:
        """Optional: without a reference only ``max_error_rate`` is checked."""
        values, _ = _finite(reference.errors)
        self._reference = values if len(values) >= self.config.min_samples else None

    def reset(self) -> None:
        """Nothing is learned from windows."""

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        if self._reference is None and self.config.max_error_rate is None:
            raise base.CannotRun(
                "error_rate: no reference with statuses and no max_error_rate to compare with"
            )
        values, invalid = _finite(window.errors)
        if len(values) < self.config.min_samples:
            raise base.CannotRun(
                f"error_rate: {len(values)} records with a status, "
                f"fewer than min_samples={self.config.min_samples}"
            )
        rate = float(np.mean(values > 0))
        extras = {"error_rate": rate, "errors": float(np.sum(values > 0))}
        p_value: float | None = None
        increase: float | None = None
        drifted = False
        bounds = []
        if self._reference is not None:
            reference_rate = float(np.mean(self._reference > 0))
            increase = rate - reference_rate
            p_value = pvalues.two_proportion_greater(rate, len(values), reference_rate, len(self._reference))
            drifted = p_value < self.config.alpha and increase >= self.config.min_increase
            bounds.append(reference_rate + self.config.min_increase)
            extras["reference_error_rate"] = reference_rate
        if self.config.max_error_rate is not None:
            breached = rate > self.config.max_error_rate
            extras["slo_breach"] = float(breached)
            drifted = drifted or breached
            bounds.append(self.config.max_error_rate)
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic="error_rate",
            score=rate,
            threshold=min(bounds),
            drifted=drifted,
            p_value=p_value,
            effect_size=increase,
            reference_size=len(self._reference) if self._reference is not None else 0,
            current_size=len(values),
            missing_count=invalid,
            model_version=window.model_version,
            segment=window.segment,
            extras=extras,
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        def make_window(draw: np.random.Generator) -> window_mod.Window:
            return _error_window(draw, 500, 0.02)

        return base.ConformanceExample({}, _error_window(rng, 5000, 0.02), make_window, 0.01)


def _error_window(rng: np.random.Generator, size: int, rate: float) -> window_mod.Window:
    return window_mod.Window(features={}, errors=(rng.random(size) < rate).astype(np.float64))

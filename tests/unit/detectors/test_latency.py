"""Latency quantiles, SLOs and regressions; error rate; the mergeable quantile sketch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors import base, latency
from detectors import window as window_mod


def latencies(rng: np.random.Generator, size: int, slowdown: float = 1.0) -> window_mod.Window:
    gpu = rng.lognormal(math.log(8.0), 0.3, size) * slowdown
    return window_mod.Window(
        features={}, gpu_latency_ms=gpu, latency_ms=gpu + rng.lognormal(math.log(5.0), 0.5, size)
    )


def detector(reference: window_mod.Window | None = None, **config: object) -> latency.LatencyDetector:
    found = latency.LatencyDetector(latency.LatencyConfig.model_validate(config))
    if reference is not None:
        found.set_reference(reference)
    return found


def test_quantiles_are_exact_per_window() -> None:
    rng = np.random.default_rng(0)
    window = latencies(rng, 1001)
    result = detector().update(window)
    gpu = next(d for d in result.details if d.feature == "gpu_latency_ms")
    assert gpu.extras["p95"] == np.quantile(window.gpu_latency_ms, 0.95)  # type: ignore[arg-type]
    assert result.extras["latency_ms.p99"] == np.quantile(window.latency_ms, 0.99)  # type: ignore[arg-type]
    assert not result.drifted  # no SLO and no reference: nothing to judge against


def test_slo_breach_on_gpu_p95() -> None:
    rng = np.random.default_rng(1)
    window = latencies(rng, 500)
    p95 = float(np.quantile(window.gpu_latency_ms, 0.95))  # type: ignore[arg-type]
    assert not detector(gpu_p95_slo_ms=p95 + 0.01).update(window).drifted
    breached = detector(gpu_p95_slo_ms=p95 - 0.01).update(window)
    assert breached.drifted and breached.extras["gpu_latency_ms.slo_breach"] == 1.0


def test_regression_needs_significance_and_the_relative_floor() -> None:
    rng = np.random.default_rng(2)
    watcher = detector(latencies(rng, 5000))
    quiet = [watcher.update(latencies(rng, 400)).drifted for _ in range(20)]
    assert sum(quiet) == 0
    slower = watcher.update(latencies(rng, 400, slowdown=1.5))
    assert slower.drifted and slower.feature is None
    assert slower.effect_size is not None and slower.effect_size >= 0.2
    # Large windows: +5% is significant but below the 20% floor, so no alarm.
    big = detector(latencies(rng, 200_000))
    small_shift = big.update(latencies(rng, 200_000, slowdown=1.05))
    gpu = next(d for d in small_shift.details if d.feature == "gpu_latency_ms")
    assert gpu.p_value is not None and gpu.p_value < 1e-6
    assert not small_shift.drifted


def test_invalid_values_are_counted_and_absent_columns_skipped() -> None:
    values = np.concatenate([np.full(50, 10.0), [np.nan, -1.0, np.inf]])
    result = detector(columns=["gpu_latency_ms"]).update(
        window_mod.Window(features={}, gpu_latency_ms=values)
    )
    assert result.missing_count == 3 and result.current_size == 50
    with pytest.raises(base.CannotRun, match="valid values"):
        detector().update(window_mod.Window(features={"x": np.zeros(100)}))


def test_error_rate_quiet_then_fires() -> None:
    rng = np.random.default_rng(3)

    def errors(size: int, rate: float) -> window_mod.Window:
        return window_mod.Window(features={}, errors=(rng.random(size) < rate).astype(np.float64))

    watcher = latency.ErrorRateDetector(latency.ErrorRateConfig())
    watcher.set_reference(errors(5000, 0.02))
    assert sum(watcher.update(errors(500, 0.02)).drifted for _ in range(20)) <= 1
    result = watcher.update(errors(500, 0.08))
    assert result.drifted and result.effect_size is not None and result.effect_size > 0.03
    capped = latency.ErrorRateDetector(latency.ErrorRateConfig(max_error_rate=0.05))
    assert capped.update(errors(500, 0.10)).drifted
    with pytest.raises(base.CannotRun, match="no reference"):
        latency.ErrorRateDetector(latency.ErrorRateConfig()).update(errors(100, 0.1))


@pytest.mark.parametrize("relative_error", [0.01, 0.05])
def test_sketch_quantiles_within_the_stated_relative_error(relative_error: float) -> None:
    rng = np.random.default_rng(4)
    values = rng.lognormal(math.log(20.0), 1.0, 20_000)
    sketch = latency.QuantileSketch(relative_error=relative_error)
    sketch.add(values)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert abs(sketch.quantile(q) - exact) <= relative_error * exact


def test_sketches_merge_by_adding_counts() -> None:
    rng = np.random.default_rng(5)
    left, right = rng.exponential(10.0, 3000), rng.exponential(30.0, 2000)
    a, b, both = latency.QuantileSketch(), latency.QuantileSketch(), latency.QuantileSketch()
    a.add(left)
    b.add(right)
    both.add(np.concatenate([left, right]))
    merged = a.merge(b)
    assert np.array_equal(merged.counts, both.counts) and merged.count == 5000
    assert merged.quantile(0.95) == both.quantile(0.95)
    with pytest.raises(ValueError, match="same relative_error"):
        a.merge(latency.QuantileSketch(relative_error=0.02))


def test_sketch_end_bins_report_their_bounds() -> None:
    sketch = latency.QuantileSketch(min_value=1.0, max_value=100.0)
    sketch.add([0.0, 0.5, 1000.0, float("nan")])
    assert sketch.count == 3
    assert sketch.quantile(0.0) == 1.0 and sketch.quantile(1.0) == 100.0


def test_gpu_context_summarises_readings_and_skips_gaps() -> None:
    readings = [
        {
            "utilization_gpu_pct": 40.0,
            "memory_used_bytes": 2.0,
            "memory_total_bytes": 8.0,
            "temperature_c": 60.0,
        },
        {
            "utilization_gpu_pct": 80.0,
            "memory_used_bytes": 6.0,
            "memory_total_bytes": 8.0,
            "power_w": float("nan"),
        },
    ]
    assert latency.gpu_context(readings) == {
        "gpu_utilization_mean_pct": 60.0,
        "gpu_utilization_max_pct": 80.0,
        "gpu_memory_used_max_fraction": 0.75,
        "gpu_temperature_max_c": 60.0,
    }
    assert latency.gpu_context([]) == {}

"""Evidently Report([DataDriftPreset()]) against DataDriftDetector.update on 20 numeric columns, and
the per-window cost of the vector detectors at 768 dimensions.

Both sides warm: one Evidently warm-up report first, then the median of 3 reports; the detector's
update (reference already set, as in the agent) is the median of many runs. Same data, same
process, so the ratio is what to quote (ENVIRONMENT.md measured the warm report at ~1.4 s at 10k
on an idle machine). The load average is printed before and after: on a shared machine both
sides slow down, and the ratio moves less than either time.

Rows are reference rows = window rows, as in ENVIRONMENT.md's measurement. The agent's usual case,
a window smaller than the reference, is timed too (agent only: Evidently's time barely depends
on it) so the quantile pairing of unequal sizes is covered.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors import base, data_drift, multivariate, registry, vectors
from detectors import window as window_mod

COLUMNS = 20
ROWS = (1_000, 10_000, 100_000)
EVIDENTLY_RUNS = 3
# Vector detectors: an embedding of this dimension, reference and window rows as the agent's defaults.
VECTOR_DIMENSION = 768
VECTOR_REFERENCE_ROWS = 5_000
VECTOR_WINDOW_ROWS = 1_000
VECTOR_RUNS = 5
AGENT_SECONDS = 2.0  # timing budget per size for the detector's median
Columns = dict[str, npt.NDArray[np.float64]]


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _data(reference_rows: int, current_rows: int) -> tuple[Columns, Columns]:
    rng = np.random.default_rng(reference_rows + current_rows)
    reference = {f"f{i}": rng.normal(0.0, 1.0, reference_rows) for i in range(COLUMNS)}
    # Half the columns shift, so both verdicts occur.
    current = {f"f{i}": rng.normal(0.2 if i % 2 else 0.0, 1.0, current_rows) for i in range(COLUMNS)}
    return reference, current


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def run() -> None:
    import evidently  # noqa: PLC0415 - about 10 s and 290 MB: only when this benchmark runs
    import pandas as pd  # noqa: PLC0415
    from evidently import presets  # noqa: PLC0415

    print(f"data drift, {COLUMNS} numeric columns, reference rows = current rows ({_load()})")
    print(f"{'rows':>8} {'evidently (s)':>14} {'agent (ms)':>11} {'speed-up':>9}  verdicts agree")
    for rows in ROWS:
        _bench_one(rows, evidently, presets, pd)
    print(f"agent only, window = reference rows / 4: {_unequal_sizes()}")
    print(f"({_load()})")
    run_vectors()


def run_vectors() -> None:
    """Median seconds of one window's verdict per vector detector, beside the 20-column MMD's.

    The baseline is the column MMD (multivariate.MMDDetector) on 20 numeric columns with the same
    rows, timed in the same run: the ratio is what to quote. CPU on one torch thread (the
    detectors' default); a CUDA row too when torch sees a GPU.
    """
    import torch  # noqa: PLC0415 - the detectors load it anyway; imported here for the device check

    devices: list[multivariate.Device] = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    print(
        f"vector detectors, {VECTOR_DIMENSION} dims, reference {VECTOR_REFERENCE_ROWS} rows, window "
        f"{VECTOR_WINDOW_ROWS} rows, median of {VECTOR_RUNS} ({_load()})"
    )
    for device in devices:
        baseline = _column_mmd_seconds(device)
        print(f"  [{device}] baseline: mmd on 20 numeric columns {baseline * 1e3:9.1f} ms")
        for name in vectors.NAMES:
            seconds, drifted = _vector_seconds(name, device)
            print(
                f"  [{device}] {name:<26} {seconds * 1e3:9.1f} ms  {seconds / baseline:6.1f}x baseline"
                f"  (drift found: {drifted})"
            )
    print(f"({_load()})")


def _vector_windows() -> tuple[window_mod.Window, window_mod.Window]:
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(64, VECTOR_DIMENSION)).astype(np.float32) / 8.0
    reference = rng.normal(size=(VECTOR_REFERENCE_ROWS, 64)).astype(np.float32) @ mixing
    shifted = rng.normal(size=(VECTOR_WINDOW_ROWS, 64)).astype(np.float32)
    shifted[:, :4] += 0.5  # a shift in a few latent directions, so every detector has work to do
    return (
        window_mod.Window(features={}, vectors={"embedding": reference}),
        window_mod.Window(features={}, vectors={"embedding": shifted @ mixing}),
    )


def _vector_seconds(name: str, device: multivariate.Device) -> tuple[float, bool]:
    reference, window = _vector_windows()
    options: dict[str, Any] = {"device": device} if name == "vector_mmd" else {}
    detector = registry.default_registry().create(name, options)
    assert isinstance(detector, base.NeedsReference)
    detector.set_reference(reference)
    drifted = detector.update(window).drifted  # warm-up (CUDA context, caches)
    return _median_seconds(lambda: detector.update(window), VECTOR_RUNS), drifted


def _column_mmd_seconds(device: multivariate.Device) -> float:
    rng = np.random.default_rng(8)
    reference = window_mod.Window(
        features={f"x{i}": rng.normal(size=VECTOR_REFERENCE_ROWS) for i in range(COLUMNS)}
    )
    window = window_mod.Window(
        features={f"x{i}": rng.normal(size=VECTOR_WINDOW_ROWS) for i in range(COLUMNS)}
    )
    detector = multivariate.MMDDetector(multivariate.MMDConfig(device=device))
    detector.set_reference(reference)
    detector.update(window)
    return _median_seconds(lambda: detector.update(window), VECTOR_RUNS)


def _agent_seconds(reference: Columns, current: Columns) -> tuple[float, float]:
    """(median seconds of one update, number of drifted columns) with the reference already set."""
    detector = data_drift.DataDriftDetector(data_drift.DataDriftConfig())
    detector.set_reference(window_mod.Window(features=reference))
    current_window = window_mod.Window(features=current)
    result = detector.update(current_window)
    first = _median_seconds(lambda: detector.update(current_window), 3)
    runs = max(5, min(200, int(AGENT_SECONDS / max(first, 1e-6))))
    seconds = _median_seconds(lambda: detector.update(current_window), runs)
    return seconds, result.extras["number_of_drifted_columns"]


def _bench_one(rows: int, evidently: Any, presets: Any, pd: Any) -> None:
    reference, current = _data(rows, rows)
    ref_frame, cur_frame = pd.DataFrame(reference), pd.DataFrame(current)
    report = evidently.Report([presets.DataDriftPreset()])
    snapshot = report.run(cur_frame, ref_frame)  # warm-up
    evidently_s = _median_seconds(lambda: report.run(cur_frame, ref_frame), EVIDENTLY_RUNS)
    agent_s, drifted = _agent_seconds(reference, current)
    counted = next(
        m for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")
    )
    agree = counted["value"]["count"] == drifted
    print(f"{rows:>8} {evidently_s:>14.3f} {agent_s * 1e3:>11.2f} {evidently_s / agent_s:>8.0f}x  {agree}")


def _unequal_sizes() -> str:
    timings = []
    for rows in ROWS:
        seconds, _ = _agent_seconds(*_data(rows, rows // 4))
        timings.append(f"{rows} x {rows // 4}: {seconds * 1e3:.2f} ms")
    return "; ".join(timings)


if __name__ == "__main__":
    # `python -m bench.detectors vectors`: the vector detectors alone (no Evidently import).
    run_vectors() if sys.argv[1:] == ["vectors"] else run()

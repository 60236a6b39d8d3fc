"""Evidently Report([DataDriftPreset()]) against DataDriftDetector.update on 20 numeric columns.

Both sides warm: one Evidently warm-up report first, then the median of 3 reports; the detector's
update (reference already set, as in the agent) is the median of many runs. Same data, same
process, so the ratio is what to quote (ENVIRONMENT.md measured the warm report at ~1.4 s at 10k).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import data_drift
from detectors import window as window_mod

COLUMNS = 20
ROWS = (1_000, 10_000, 100_000)
EVIDENTLY_RUNS = 3


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _data(rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(rows)
    reference = {f"f{i}": rng.normal(0.0, 1.0, rows) for i in range(COLUMNS)}
    # Half the columns shift, so both verdicts occur.
    current = {f"f{i}": rng.normal(0.2 if i % 2 else 0.0, 1.0, rows) for i in range(COLUMNS)}
    return reference, current


def run() -> None:
    import evidently  # noqa: PLC0415 - about 10 s and 290 MB: only when this benchmark runs
    import pandas as pd  # noqa: PLC0415
    from evidently import presets  # noqa: PLC0415

    print(f"data drift, {COLUMNS} numeric columns, reference rows = current rows")
    print(f"{'rows':>8} {'evidently (s)':>14} {'agent (ms)':>11} {'speed-up':>9}  verdicts agree")
    for rows in ROWS:
        _bench_one(rows, evidently, presets, pd)


def _bench_one(rows: int, evidently: Any, presets: Any, pd: Any) -> None:
    reference, current = _data(rows)
    ref_frame, cur_frame = pd.DataFrame(reference), pd.DataFrame(current)
    report = evidently.Report([presets.DataDriftPreset()])
    snapshot = report.run(cur_frame, ref_frame)  # warm-up
    evidently_s = _median_seconds(lambda: report.run(cur_frame, ref_frame), EVIDENTLY_RUNS)

    detector = data_drift.DataDriftDetector(data_drift.DataDriftConfig())
    detector.set_reference(window_mod.Window(features=reference))
    current_window = window_mod.Window(features=current)
    result = detector.update(current_window)
    first = _median_seconds(lambda: detector.update(current_window), 3)
    runs = max(5, min(200, int(2.0 / max(first, 1e-6))))  # about 2 s of timing per size
    agent_s = _median_seconds(lambda: detector.update(current_window), runs)

    counted = next(
        m for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")
    )
    agree = counted["value"]["count"] == result.extras["number_of_drifted_columns"]
    print(f"{rows:>8} {evidently_s:>14.3f} {agent_s * 1e3:>11.2f} {evidently_s / agent_s:>8.0f}x  {agree}")


if __name__ == "__main__":
    run()

"""The vector part of bench/detectors.py prints one timed row per vector detector beside the baseline."""

from __future__ import annotations

import re

import pytest

from bench import detectors as bench_detectors
from detectors import vectors


def test_every_vector_detector_is_timed_against_the_column_mmd_and_finds_the_shift(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Small sizes: this checks what the benchmark prints, not how fast anything is.
    monkeypatch.setattr(bench_detectors, "VECTOR_DIMENSION", 96)
    monkeypatch.setattr(bench_detectors, "VECTOR_REFERENCE_ROWS", 400)
    monkeypatch.setattr(bench_detectors, "VECTOR_WINDOW_ROWS", 200)
    monkeypatch.setattr(bench_detectors, "VECTOR_RUNS", 1)
    bench_detectors.run_vectors()
    out = capsys.readouterr().out
    assert "[cpu] baseline: mmd on 20 numeric columns" in out
    for name in vectors.NAMES:
        row = re.search(rf"\[cpu\] {name} +([0-9.]+) ms +([0-9.]+)x baseline +\(drift found: (\w+)\)", out)
        assert row is not None, out
        assert float(row.group(1)) > 0 and row.group(3) == "True"

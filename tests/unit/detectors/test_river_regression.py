"""Pinned detection points on River's seeded synthetic drift streams.

The error stream of a fixed rule-based classifier on ConceptDriftStream (SEA, Agrawal; drift
centred at 4000) goes through our detector classes, window by window, as the agent feeds them.
The pins catch any behaviour change; the bounds next to them say why the pins are sensible.
"""

from __future__ import annotations

import numpy as np
import pytest

from detectors import concept_streams
from detectors import window as window_mod
from tests.unit.detectors.test_river_equivalence import agrawal_errors, sea_errors

POSITION = 4000
WINDOW = 500


def error_windows(errors: np.ndarray) -> list[window_mod.Window]:
    # Labels all 1; the prediction is wrong exactly where the error stream says so.
    windows = []
    for start in range(0, len(errors), WINDOW):
        chunk = errors[start : start + WINDOW]
        labels = np.ones(len(chunk))
        windows.append(window_mod.Window(features={}, predictions=labels - chunk, labels=labels))
    return windows


def detection_points(detector: concept_streams._StreamDetector, errors: np.ndarray) -> list[int]:
    points = []
    for number, window in enumerate(error_windows(errors)):
        result = detector.update(window)
        if result.drifted:
            assert result.score >= 1.0
            points.append(number * WINDOW + int(result.extras["first_change_offset"]))
    return points


@pytest.mark.parametrize(
    ("stream", "detector", "expected"),
    [
        ("sea", concept_streams.ADWINDetector(concept_streams.ADWINConfig()), [5823]),
        ("sea", concept_streams.DDMDetector(concept_streams.DDMConfig()), [2220, 4218]),
        ("sea", concept_streams.PageHinkleyDetector(concept_streams.PageHinkleyConfig()), [4619, 7701]),
        ("agrawal", concept_streams.ADWINDetector(concept_streams.ADWINConfig()), [3999]),
        ("agrawal", concept_streams.DDMDetector(concept_streams.DDMConfig()), [4078]),
        ("agrawal", concept_streams.PageHinkleyDetector(concept_streams.PageHinkleyConfig()), [4083]),
    ],
)
def test_pinned_detection_points(
    stream: str, detector: concept_streams._StreamDetector, expected: list[int]
) -> None:
    errors = sea_errors(8000, POSITION, 42) if stream == "sea" else agrawal_errors(8000, POSITION, 42)
    points = detection_points(detector, errors)
    assert points == expected
    # Every detector catches the drift: a detection within 2000 records after the transition starts
    # (SEA's error rate only moves from 0.10 to 0.16, so ADWIN needs longer there).
    assert any(POSITION - 200 <= p <= POSITION + 2000 for p in points)


def test_error_rates_confirm_the_streams_drift() -> None:
    sea = sea_errors(8000, POSITION, 42)
    agrawal = agrawal_errors(8000, POSITION, 42)
    assert sea[:POSITION].mean() < sea[POSITION + 200 :].mean() - 0.03
    assert agrawal[:POSITION].mean() < agrawal[POSITION + 200 :].mean() - 0.3

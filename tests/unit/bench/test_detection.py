"""The detection benchmark measures what it says: streams change where they should, and the
agent's pages and the peers' detections are scored against the change."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from bench import detection

TINY = detection.Size(reference=3_000, stream=12_000, seeds=1)


def test_outcome_counts_false_alarms_before_the_change_and_the_delay_after() -> None:
    assert detection.outcome([10, 400, 1_250, 1_900], 1_000) == detection.Outcome(2, 250)
    assert detection.outcome([10, 400], 1_000) == detection.Outcome(2, None)
    assert detection.outcome([10, 400], None) == detection.Outcome(2, None)  # stationary: all false


def test_verdict_compares_with_the_best_peer_on_both_counts() -> None:
    peers = {"a": (0.0, 200.0), "b": (1.0, 100.0)}
    assert detection.verdict((0.0, 90.0), peers) == "meets"
    assert detection.verdict((0.0, 300.0), peers) == "loses: 200 records later"
    assert detection.verdict((2.0, None), peers) == "loses: 2 more false alarms, never pages"


@pytest.mark.parametrize("generator", ["SEA", "Agrawal", "STAGGER", "Hyperplane"])
def test_river_streams_change_concept_where_they_say(generator: str) -> None:
    stream = detection.concept_change(TINY, 0, generator=generator, width=1)
    assert stream.errors is not None and stream.change == TINY.change
    before, after = stream.errors[: stream.change], stream.errors[stream.change :]
    # The served model fits the first concept; the second one makes it err clearly more often.
    assert float(np.mean(after)) > float(np.mean(before)) + 0.08
    # The reference carries its labels (a labelled reference), the stream its label records.
    assert all("label" in row for row in stream.reference)
    assert stream.labels is not None and len(stream.labels) == len(stream.records)


def test_a_stationary_river_stream_keeps_its_concept() -> None:
    stream = detection.concept_change(TINY, 0, generator="SEA", width=None)
    assert stream.change is None and stream.errors is not None
    halves = np.array_split(stream.errors, 2)
    assert float(np.mean(halves[1])) == pytest.approx(float(np.mean(halves[0])), abs=0.02)


def test_the_agent_pages_after_a_mean_shift_and_not_on_a_stationary_stream(tmp_path: pathlib.Path) -> None:
    shifted = detection.gaussian(TINY, 0, features=5, shifted=3)
    pages = detection.agent_pages(shifted, tmp_path)
    assert shifted.change is not None
    assert pages and min(pages) >= shifted.change
    stationary = detection.gaussian(TINY, 0, features=5, shifted=0)
    assert stationary.change is None
    assert detection.agent_pages(stationary, tmp_path) == []


def test_the_public_shuttle_stream_shifts_its_inputs_only_where_it_says() -> None:
    shifted = detection.shuttle(TINY, 0, shift=True)
    assert shifted.change == TINY.stream // 2 and shifted.labels is None
    f1 = np.asarray([row["features"]["f1"] for row in shifted.records])
    floor = np.quantile([row["features"]["f1"] for row in shifted.reference], 0.4)
    assert float(np.mean(f1[: shifted.change] >= floor)) < 0.75  # before: the set as it is
    assert bool(np.all(f1[shifted.change :] >= floor))  # after: the new segment only
    stationary = detection.shuttle(TINY, 0, shift=False)
    assert stationary.change is None and stationary.labels is not None and stationary.errors is not None


def test_calibration_counts_adwins_false_alarms_at_the_agents_defaults() -> None:
    found = detection.calibration(records=20_000)
    assert [rate for rate, _ in found] == list(detection.CALIBRATION_ERROR_RATES)
    assert all(alarms == 0 for _, alarms in found)  # delta 0.002: none in 20 000 stationary records

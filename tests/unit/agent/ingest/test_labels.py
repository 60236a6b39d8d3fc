"""LabelJoin: either arrival order, TTL expiry, duplicates, the memory bound."""

from __future__ import annotations

import pytest

from agent.ingest import label_join as labels
from agent.ingest import records


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prediction(request_id: str) -> records.PredictionRecord:
    return records.PredictionRecord(request_id, 1.0, "m", "1", {"x": 1.0}, 0.5)


def label(request_id: str, value: float | str = 1.0) -> records.LabelRecord:
    return records.LabelRecord(request_id, 2.0, value)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def join(clock: FakeClock) -> labels.LabelJoin:
    return labels.LabelJoin(ttl_s=60.0, max_pending=100, clock=clock)


def test_prediction_first_then_label(join: labels.LabelJoin) -> None:
    record = prediction("a")
    assert join.add_prediction(record, 7) is None
    assert join.pending == 1
    joined = join.add_label(label("a", "fraud"))
    assert joined == labels.JoinedRecord(record, "fraud", 7)
    assert (join.joined, join.pending) == (1, 0)


def test_label_first_then_prediction(join: labels.LabelJoin) -> None:
    assert join.add_label(label("b", 0.0)) is None
    assert join.pending_labels == 1
    record = prediction("b")
    joined = join.add_prediction(record, 3)
    assert joined is not None and (joined.record, joined.label, joined.index) == (record, 0.0, 3)
    assert (join.joined, join.pending_labels) == (1, 0)


def test_unmatched_ids_do_not_join(join: labels.LabelJoin) -> None:
    join.add_prediction(prediction("a"))
    assert join.add_label(label("z")) is None
    assert (join.joined, join.pending, join.pending_labels) == (0, 1, 1)


def test_ttl_expiry_counts_unlabelled_predictions_and_orphan_labels(
    join: labels.LabelJoin, clock: FakeClock
) -> None:
    join.add_prediction(prediction("old"))
    join.add_label(label("orphan"))
    clock.now += 30
    join.add_prediction(prediction("young"))
    clock.now += 30.5  # "old" and "orphan" are 60.5 s old, "young" 30.5 s
    assert join.expire() == 2
    assert (join.expired_unlabelled, join.orphan_labels_expired, join.pending, join.pending_labels) == (
        1,
        1,
        1,
        0,
    )
    # The expired prediction can no longer be joined: its label now waits as an orphan.
    assert join.add_label(label("old")) is None
    assert join.add_label(label("young")) is not None


def test_entry_exactly_at_the_ttl_is_kept(join: labels.LabelJoin, clock: FakeClock) -> None:
    join.add_prediction(prediction("a"))
    clock.now += 60.0
    assert join.expire() == 0
    assert join.pending == 1


def test_duplicate_labels_are_counted_not_joined_twice(join: labels.LabelJoin) -> None:
    join.add_prediction(prediction("a"))
    assert join.add_label(label("a")) is not None
    assert join.add_label(label("a", 0.0)) is None
    join.add_label(label("b"))
    assert join.add_label(label("b")) is None
    assert (join.duplicate_labels, join.joined, join.pending_labels) == (2, 1, 1)


def test_duplicate_predictions_keep_the_first(join: labels.LabelJoin) -> None:
    first, second = prediction("a"), prediction("a")
    join.add_prediction(first, 1)
    assert join.add_prediction(second, 2) is None
    joined = join.add_label(label("a"))
    assert joined is not None and joined.index == 1 and joined.record is first
    assert join.duplicate_predictions == 1


def test_pending_is_bounded_and_oldest_is_evicted(clock: FakeClock) -> None:
    join = labels.LabelJoin(ttl_s=60.0, max_pending=3, clock=clock)
    for request_id in "abcde":
        join.add_prediction(prediction(request_id))
        join.add_label(label(request_id.upper()))
    assert (join.pending, join.pending_labels) == (3, 3)
    assert (join.evicted_predictions, join.evicted_labels) == (2, 2)
    assert join.add_label(label("a")) is None  # evicted
    assert join.add_label(label("e")) is not None


def test_bad_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"labels\.ttl_s must be > 0"):
        labels.LabelJoin(ttl_s=0, max_pending=1, clock=clock)
    with pytest.raises(ValueError, match=r"labels\.max_pending must be >= 1"):
        labels.LabelJoin(ttl_s=1, max_pending=0, clock=clock)

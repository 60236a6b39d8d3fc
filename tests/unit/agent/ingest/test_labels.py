"""LabelJoin: either arrival order, TTL expiry, duplicates, the memory bound."""

from __future__ import annotations

import prometheus_client
import pytest

from agent.ingest import label_join as labels
from agent.ingest import records
from agent.observability import metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prediction(request_id: str, width: int = 1) -> records.PredictionRecord:
    features: dict[str, int | float | str | bool | None] = {f"x{i}": 1.0 + i for i in range(width)}
    return records.PredictionRecord(request_id, 1.0, "m", "1", features, 0.5)


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
    assert joined is not None and joined.index == 1 and joined.record == first
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


def test_a_waiting_prediction_comes_back_whole_after_its_compact_wait(join: labels.LabelJoin) -> None:
    record = records.PredictionRecord(
        "a",
        1.5,
        "m",
        "7",
        {"n": 3, "x": 0.25, "c": "fr", "b": True, "none": None},
        "cat",
        confidence=0.9,
        probabilities={"cat": 0.9, "dog": 0.1},
        segment={"region": "eu"},
        extra={"k": [1, 2]},
    )
    join.add_prediction(record, 4)
    joined = join.add_label(label("a"))
    assert joined is not None and joined.record == record
    assert isinstance(joined.record.features["n"], int)  # an int stays an int (categorical codes)


def test_the_oldest_goes_when_the_byte_bound_is_hit_and_it_is_counted(clock: FakeClock) -> None:
    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    one = labels.LabelJoin(ttl_s=60.0, max_pending=1000, clock=clock)
    one.add_prediction(prediction("probe", width=200))
    entry_bytes = one.held_bytes
    # Room for ten 200-feature predictions, far fewer than max_pending entries.
    join = labels.LabelJoin(
        ttl_s=60.0, max_pending=1000, clock=clock, max_bytes=10 * entry_bytes + 5, metrics=agent_metrics
    )
    for index in range(25):
        clock.now += 1
        join.add_prediction(prediction(f"r{index:02d}", width=200), index)
        assert join.held_bytes <= join.max_bytes
    assert (join.pending, join.evicted_predictions) == (10, 15)
    assert join.add_label(label("r14")) is None  # evicted: the label waits as an orphan
    assert join.add_label(label("r24")) is not None  # the newest stayed
    evicted = registry.get_sample_value("drift_agent_buffer_evicted_total", {"buffer": "label_join"})
    assert evicted == join.evicted_predictions + join.evicted_labels >= 15
    held = registry.get_sample_value("drift_agent_buffer_bytes", {"buffer": "label_join"})
    assert held == join.held_bytes > 0


def test_bytes_held_return_to_zero_when_everything_joins_or_expires(
    join: labels.LabelJoin, clock: FakeClock
) -> None:
    for index in range(5):
        join.add_prediction(prediction(f"p{index}", width=10))
        join.add_label(label(f"l{index}"))
    join.add_label(label("p0"))
    join.add_prediction(prediction("l0"))
    assert join.held_bytes > 0
    clock.now += 61
    join.expire()
    assert (join.pending, join.pending_labels, join.held_bytes) == (0, 0, 0)


def test_a_byte_bound_below_a_few_entries_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"raise memory\.budget_mib"):
        labels.LabelJoin(ttl_s=1, max_pending=10, clock=clock, max_bytes=1000)

"""bench/memory.py measures what it says: valid records, labels on their schedule, the agent path fed."""

from __future__ import annotations

import collections

from bench import memory


def test_labels_come_once_on_schedule_and_one_in_fifty_never() -> None:
    case = memory.Case(width=3, embedding_dim=0, records=25_000, labels=True)
    arrived_at: dict[int, int] = {}
    predictions = 0
    for message in memory.messages(case):
        if message.topic == memory.PREDICTIONS_TOPIC:
            predictions = message.offset
            continue
        assert message.offset not in arrived_at
        arrived_at[message.offset] = predictions
    lags = collections.Counter(arrived_at[i] - i for i in arrived_at)
    assert set(lags) == {memory.LABEL_LAG, memory.LATE_LABEL_LAG}
    labelled_early = [i for i in range(case.records - memory.LATE_LABEL_LAG) if i in arrived_at]
    assert len(labelled_early) == (case.records - memory.LATE_LABEL_LAG) * (1 - 1 / memory.NEVER_EVERY)
    assert all(
        arrived_at[i] - i == memory.LATE_LABEL_LAG for i in labelled_early if i % memory.LATE_EVERY == 0
    )


def test_the_agent_path_takes_every_record_and_joins_the_labels() -> None:
    case = memory.Case(width=20, embedding_dim=8, records=3000, labels=True)
    result = memory.child("agent", case)
    assert result["rejected"] == 0
    assert result["windows"] >= 2  # predictions' windows of 1000, and the label-joined ones
    assert result["joined"] > 0 and result["join_mib"] > 0
    assert result["peak_mib"] >= result["rss_end_mib"] > 0
    bare = memory.child("baseline", case)
    assert bare["agent_s"] == 0 and bare["joined"] == 0

"""The retrain rows' buffer: bounded in rows and in estimated bytes, the oldest go first."""

from __future__ import annotations

from agent.ingest import records
from agent.respond import training


def record(index: int, width: int) -> records.PredictionRecord:
    features: dict[str, int | float | str | bool | None] = {f"f{i}": float(index + i) for i in range(width)}
    return records.PredictionRecord(f"r{index}", float(index), "m", "1", features, 1.0, confidence=0.8)


def test_the_oldest_rows_go_at_the_byte_bound_and_are_counted() -> None:
    one_row = training.row_bytes(training.row_of(record(0, 200), 1))
    buffer = training.TrainingBuffer(max_rows=1000, max_bytes=10 * one_row)
    for index in range(25):
        buffer.add(record(index, 200), index % 2)
        assert buffer.held_bytes <= buffer.max_bytes
    kept = buffer.rows()
    assert [row.request_id for row in kept] == [f"r{i}" for i in range(15, 25)]
    assert buffer.evicted == 15


def test_the_row_bound_still_holds_and_clear_frees_the_bytes() -> None:
    buffer = training.TrainingBuffer(max_rows=3)
    buffer.extend([training.row_of(record(i, 2), 0) for i in range(5)])
    assert [row.request_id for row in buffer.rows()] == ["r2", "r3", "r4"]
    assert buffer.evicted == 2
    buffer.clear()
    assert (buffer.rows(), buffer.held_bytes) == ([], 0)

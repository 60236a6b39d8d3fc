"""The retrain's data: the most recent label-joined records, kept as training rows."""

from __future__ import annotations

import collections
import threading
from typing import Final

from actions.retrain import dataset
from agent.ingest import records

# A row's Python objects beyond its features, and each feature value as a dict entry with its
# float (tracemalloc: 1.3 KB per row at 20 features, 15.1 KB at 200; these err high).
ROW_OVERHEAD_BYTES: Final = 200
FEATURE_VALUE_BYTES: Final = 76
# No byte bound given: the row bound alone applies.
UNBOUNDED_BYTES: Final = 1 << 62


def row_bytes(row: dataset.TrainingRow) -> int:
    """An estimate of what one row holds, for the byte bound."""
    return ROW_OVERHEAD_BYTES + FEATURE_VALUE_BYTES * len(row.features)


class TrainingBuffer:
    """The most recent label-joined records, as training rows for a retrain (bounded in rows and
    in estimated bytes, the retrain share of ``memory.budget_mib``; the oldest go first)."""

    def __init__(self, max_rows: int, max_bytes: int = UNBOUNDED_BYTES) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._rows: collections.deque[dataset.TrainingRow] = collections.deque()
        self._lock = threading.Lock()
        self.held_bytes = 0
        self.evicted = 0

    def add(self, record: records.PredictionRecord, label: int | float | str) -> None:
        self.extend([row_of(record, label)])

    def extend(self, rows: list[dataset.TrainingRow]) -> None:
        with self._lock:
            for row in rows:
                self._rows.append(row)
                self.held_bytes += row_bytes(row)
            while len(self._rows) > 1 and (
                len(self._rows) > self.max_rows or self.held_bytes > self.max_bytes
            ):
                self.held_bytes -= row_bytes(self._rows.popleft())
                self.evicted += 1

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.held_bytes = 0

    def rows(self) -> list[dataset.TrainingRow]:
        with self._lock:
            return list(self._rows)


def row_of(record: records.PredictionRecord, label: int | float | str) -> dataset.TrainingRow:
    """A label-joined record as a training row."""
    served_score = None
    if record.confidence is not None and isinstance(record.prediction, int | float):
        # Confidence is of the predicted class; the trainer wants the positive-class probability.
        served_score = record.confidence if record.prediction >= 0.5 else 1 - record.confidence
    return dataset.TrainingRow(
        request_id=record.request_id,
        timestamp=record.timestamp,
        features=records.feature_dict(record.features),
        label=label,
        segment=dict(record.segment) if record.segment else None,
        served_prediction=record.prediction,
        served_score=served_score,
    )

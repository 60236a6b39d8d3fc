"""The retrain's data: the most recent label-joined records, kept as training rows."""

from __future__ import annotations

import collections
import threading

from actions.retrain import dataset
from agent.ingest import records


class TrainingBuffer:
    """The most recent label-joined records, as training rows for a retrain (bounded)."""

    def __init__(self, max_rows: int) -> None:
        self._rows: collections.deque[dataset.TrainingRow] = collections.deque(maxlen=max_rows)
        self._lock = threading.Lock()

    def add(self, record: records.PredictionRecord, label: int | float | str) -> None:
        self.extend([row_of(record, label)])

    def extend(self, rows: list[dataset.TrainingRow]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

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
        features=dict(record.features),
        label=label,
        segment=dict(record.segment) if record.segment else None,
        served_prediction=record.prediction,
        served_score=served_score,
    )

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
        served_score = None
        if record.confidence is not None and isinstance(record.prediction, int | float):
            # Confidence is of the predicted class; the trainer wants the positive-class probability.
            served_score = record.confidence if record.prediction >= 0.5 else 1 - record.confidence
        row = dataset.TrainingRow(
            request_id=record.request_id,
            timestamp=record.timestamp,
            features=dict(record.features),
            label=label,
            segment=dict(record.segment) if record.segment else None,
            served_prediction=record.prediction,
            served_score=served_score,
        )
        with self._lock:
            self._rows.append(row)

    def rows(self) -> list[dataset.TrainingRow]:
        with self._lock:
            return list(self._rows)

"""The retrain's rows, from the evaluators to the Lease holder, through ``<prefix>.training``.

A retrain runs on the executor (the Lease holder), but label-joined records meet at their
model's evaluator, which may be another agent. ``TrainingRowPublisher`` (evaluator side) sends
them as training rows in batches; ``training_follower`` reads them on the Lease holder only,
into its bounded ``TrainingBuffer``. An agent that gains the Lease reads back the newest batches
first (enough for ``max_rows`` when batches are full), so a failover keeps the recent data.
Best effort: rows are not made durable before the input commits; a crash loses at most one
unsent batch of training data, never a decision.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import kafka
import msgspec

from actions.retrain import dataset
from agent import settings as settings_mod
from agent.ingest import records
from agent.respond import training
from agent.runtime import topic_follower

BATCH_ROWS = 500

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[dataset.TrainingRow])


class TrainingRowPublisher:
    """Batches label-joined records as training rows and sends them, keyed by model."""

    def __init__(self, producer: kafka.KafkaProducer, topic: str, *, batch_rows: int = BATCH_ROWS) -> None:
        self._producer = producer
        self._topic = topic
        self._batch_rows = batch_rows
        self._pending: dict[str, list[dataset.TrainingRow]] = {}
        self._lock = threading.Lock()
        self.sent_rows = 0

    def add(self, record: records.PredictionRecord, label: int | float | str) -> None:
        with self._lock:
            pending = self._pending.setdefault(record.model_name, [])
            pending.append(training.row_of(record, label))
            if len(pending) >= self._batch_rows:
                self._send(record.model_name)

    def flush(self) -> None:
        """Send what is pending (the agent calls this every tick, so rows never wait long)."""
        with self._lock:
            for model in list(self._pending):
                self._send(model)

    def _send(self, model: str) -> None:
        rows = self._pending.pop(model, [])
        if rows:
            value = _ENCODER.encode(rows)
            self._producer.send(self._topic, key=model.encode("utf-8"), value=value, partition=0)
            self.sent_rows += len(rows)


def training_follower(
    kafka_settings: settings_mod.KafkaSettings,
    topic: str,
    buffer: training.TrainingBuffer,
    *,
    max_rows: int,
    is_leader: Callable[[], bool],
) -> topic_follower.TopicFollower:
    """Fills ``buffer`` with the rows of every model while this agent holds the Lease (as the
    buffer of a single agent took every label-joined record it saw)."""

    def on_message(key: bytes, value: bytes) -> None:
        buffer.extend(_DECODER.decode(value))

    return topic_follower.TopicFollower(
        kafka_settings,
        topic,
        on_message,
        name="training-rows",
        backfill=math.ceil(max_rows / BATCH_ROWS) + 1,
        active=is_leader,
        on_restart=buffer.clear,
    )

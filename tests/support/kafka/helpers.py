"""Shared bits of the Kafka integration tests (settings, polling a source until enough arrived)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import kafka

from agent import settings
from agent.ingest import label_join, parsing, source, worker
from agent.observability import metrics as metrics_mod
from agent.runtime import ingest_stage


def kafka_settings(bootstrap_servers: str, topic: str, **overrides: Any) -> settings.KafkaSettings:
    """Settings for one test: its own group, fast group joins, quick reconnects."""
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "predictions_topic": topic,
        "dead_letter_topic": f"{topic}.dlq",
        "group_id": f"g-{uuid.uuid4().hex[:8]}",
        "max_poll_interval_ms": 2000,
        "session_timeout_ms": 2000,
        "poll_timeout_ms": 200,
        "reconnect_backoff_initial_s": 0.1,
        "reconnect_backoff_max_s": 1.0,
    }
    values.update(overrides)
    return settings.KafkaSettings(**values)


def poll_until(kafka_source: source.Source, count: int, timeout_s: float = 30.0) -> list[source.RawMessage]:
    """Poll until ``count`` messages arrived (or fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    got: list[source.RawMessage] = []
    while len(got) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"polled {len(got)} of {count} messages in {timeout_s:.0f}s")
        got.extend(kafka_source.poll_batch())
    return got


def prediction_json(index: int, *, n_features: int = 3, version: str = "v1") -> bytes:
    """A valid prediction-log record (README, "The prediction-log record") as Kafka message bytes."""
    record = {
        "request_id": f"req-{index}",
        "timestamp": 1_700_000_000 + index,
        "model_name": "fraud",
        "model_version": version,
        "features": {f"f{i}": float(index % 7 + i) for i in range(n_features)},
        "prediction": index % 2,
        "confidence": 0.75,
        "latency_ms": 12.5,
    }
    return json.dumps(record).encode()


def ingest_stage_of(
    config: settings.KafkaSettings,
    producer: kafka.KafkaProducer,
    agent_metrics: metrics_mod.AgentMetrics,
    *,
    fragments_topic: str,
    parser: parsing.RecordParser | None = None,
    labels_topic: str | None = None,
    join: label_join.LabelJoin | None = None,
    max_fragment_records: int = 100,
    streams: settings.StreamsSettings | None = None,
) -> ingest_stage.IngestStage:
    """The ingest stage an agent runs, on one fragments partition, with its own worker."""
    return ingest_stage.IngestStage(
        kafka_settings=config,
        streams=streams if streams is not None else settings.StreamsSettings(),
        fragments_topic=fragments_topic,
        fragment_partitions=1,
        ingest=worker.IngestWorker(
            parser=parser if parser is not None else parsing.RecordParser(),
            labels_topic=labels_topic,
            join=join,
            producer="a",
            max_fragment_records=max_fragment_records,
        ),
        producer=producer,
        metrics=agent_metrics,
    )

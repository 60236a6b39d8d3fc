"""The audit log's sink feeding a real Kafka topic (the log itself: tests/unit/agent/observability)."""

from __future__ import annotations

import json
import pathlib

import kafka
import pytest

from agent.observability import audit
from demo import broker


@pytest.mark.integration
def test_audit_lines_reach_a_real_kafka_topic(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    kafka_broker.create_topics([topic_name])
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    try:
        with audit.AuditLog(
            tmp_path / "audit.jsonl", sink=lambda line: producer.send(topic_name, line)
        ) as log:
            log.record("decision", severity="critical", token="hidden")
            log.record("action", idempotency_key="k1")
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        consumer.assign([kafka.TopicPartition(topic_name, 0)])
        received = []
        for message in consumer:
            received.append(json.loads(message.value))
            if len(received) == 2:
                break
    finally:
        consumer.close()
    assert [(e["kind"], e.get("severity"), e.get("idempotency_key")) for e in received] == [
        ("decision", "critical", None),
        ("action", None, "k1"),
    ]
    assert received[0]["token"] == audit.REDACTED
    assert received == list(audit.read_entries(tmp_path / "audit.jsonl"))

"""The audit log's sink feeding a real Kafka topic (the log itself: tests/unit/agent/observability)."""

from __future__ import annotations

import json
import pathlib

import kafka
import prometheus_client
import pytest

from agent.observability import audit
from agent.runtime import audit_topic
from demo import broker, processes
from tests.support.kafka import helpers


@pytest.mark.integration
def test_audit_lines_reach_a_real_kafka_topic(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    kafka_broker.create_topics([topic_name])
    registry = prometheus_client.CollectorRegistry()
    producer = audit_topic.AuditProducer(
        helpers.kafka_settings(kafka_broker.bootstrap_servers, "predictions"), topic_name, registry=registry
    )
    try:
        with audit.AuditLog(tmp_path / "audit.jsonl", sink=producer.send) as log:
            log.record("decision", severity="critical", token="hidden")
            log.record("action", idempotency_key="k1")
    finally:
        producer.close()
    assert registry.get_sample_value("drift_agent_audit_copies_lost_total") == 0
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


@pytest.mark.integration
def test_an_unreachable_audit_topic_loses_copies_counted_and_the_file_keeps_every_line(
    tmp_path: pathlib.Path,
) -> None:
    registry = prometheus_client.CollectorRegistry()
    nowhere = helpers.kafka_settings(f"127.0.0.1:{processes.free_port()}", "predictions")
    producer = audit_topic.AuditProducer(nowhere, "audit", registry=registry)
    try:
        with audit.AuditLog(tmp_path / "audit.jsonl", sink=producer.send) as log:
            for index in range(20):
                log.record("decision", index=index)
    finally:
        producer.close()
    assert [e["index"] for e in audit.read_entries(tmp_path / "audit.jsonl")] == list(range(20))
    assert producer.lost == 20
    assert registry.get_sample_value("drift_agent_audit_copies_lost_total") == 20


@pytest.mark.integration
def test_copies_beyond_the_audit_share_of_memory_are_lost_counted_and_kept_in_the_file(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    kafka_broker.create_topics([topic_name])
    registry = prometheus_client.CollectorRegistry()
    config = helpers.kafka_settings(kafka_broker.bootstrap_servers, "predictions")
    # Room for short lines only: a copy that would not fit never enters the producer.
    producer = audit_topic.AuditProducer(config, topic_name, registry=registry, buffer_bytes=400)
    try:
        with audit.AuditLog(tmp_path / "audit.jsonl", sink=producer.send) as log:
            log.record("decision", severity="minor")
            assert producer._producer is not None
            producer._producer.flush(timeout=10)
            assert producer.unacknowledged_bytes == 0  # the broker took it: its bytes were released
            log.record("decision", severity="critical", why="x" * 1000)
    finally:
        producer.close()
    assert registry.get_sample_value("drift_agent_audit_copies_lost_total") == 1
    assert [e.get("severity") for e in audit.read_entries(tmp_path / "audit.jsonl")] == ["minor", "critical"]

"""Dead-letter queue: every bad-input kind lands on the DLQ topic with its reason."""

from __future__ import annotations

import base64
import json
import math

import kafka
import prometheus_client
import pytest

from agent.ingest import dead_letters as dlq
from agent.ingest import parsing, records, source
from agent.observability import metrics
from demo import broker, processes
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

AGENT_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z, from an injected clock

VALID = {
    "request_id": "r1",
    "timestamp": 1_700_000_000,
    "model_name": "fraud",
    "model_version": "v1",
    "features": {"f0": 1.0},
    "prediction": 1,
}
# (raw bytes, expected reason): one per bad-input kind of the record contract, plus bytes that are not text.
BAD_INPUTS = [
    (b'{"request_id": ', records.MALFORMED_JSON),
    (b"\xff\xfe\x00not-utf8", records.MALFORMED_JSON),
    (json.dumps(VALID | {"features": "abc"}).encode(), records.WRONG_TYPE),
    (json.dumps(VALID | {"features": {"f0": math.nan}}).encode(), records.NON_FINITE),
    (json.dumps(VALID | {"latency_ms": math.inf}).encode(), records.NON_FINITE),
    (json.dumps({k: v for k, v in VALID.items() if k != "request_id"}).encode(), records.MISSING_FIELD),
    (json.dumps(VALID | {"pad": "x" * 3000}).encode(), records.OVERSIZE),
]


def decode_original(envelope: dict[str, object]) -> bytes:
    original = envelope["original"]
    assert isinstance(original, str)
    if envelope["original_encoding"] == "base64":
        return base64.b64decode(original)
    assert envelope["original_encoding"] == "utf-8"
    return original.encode("utf-8")


def test_each_bad_input_kind_reaches_the_dlq_topic(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    raws = [raw for raw, _ in BAD_INPUTS]
    kafka_infra.produce(bootstrap, topic_name, raws, partition=0)
    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    config = helpers.kafka_settings(bootstrap, topic_name)
    parser = parsing.RecordParser(max_bytes=2048)
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    dead_letters = dlq.DeadLetterQueue(config, metrics=agent_metrics, wall_clock=lambda: AGENT_TIME)
    try:
        batch = helpers.poll_until(kafka_source, len(raws))
        for message in batch:
            parsed = parser.parse_prediction(message.value)
            assert isinstance(parsed, records.Rejected), message.value[:40]
            dead_letters.send(parsed, message)
        assert dead_letters.flush(timeout_s=10)
        assert kafka_source.commit(batch)
    finally:
        dead_letters.close()
        kafka_source.close()

    envelopes = [
        json.loads(r.value) for r in kafka_infra.read_topic(bootstrap, config.dead_letter_topic, len(raws))
    ]
    envelopes.sort(key=lambda e: e["offset"])
    for offset, (envelope, (raw, reason)) in enumerate(zip(envelopes, BAD_INPUTS, strict=True)):
        assert envelope["reason"] == reason
        assert envelope["detail"]
        assert (envelope["topic"], envelope["partition"], envelope["offset"]) == (topic_name, 0, offset)
        assert decode_original(envelope) == raw
        assert envelope["original_size"] == len(raw)
        assert envelope["original_truncated"] is False
        assert envelope["agent_time"] == "2026-01-01T00:00:00+00:00"
    assert envelopes[1]["original_encoding"] == "base64"
    assert "features.f0" in envelopes[3]["detail"]
    for reason in {reason for _, reason in BAD_INPUTS}:
        expected = sum(1 for _, r in BAD_INPUTS if r == reason)
        assert registry.get_sample_value("drift_agent_dlq_total", {"reason": reason}) == expected
    assert registry.get_sample_value("drift_agent_dlq_pending") == 0


def test_outage_buffers_then_delivers_after_the_broker_returns(topic_name: str) -> None:
    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    with broker.EmbeddedBroker() as own_broker:
        config = helpers.kafka_settings(own_broker.bootstrap_servers, topic_name)
        own_broker.create_topics([config.dead_letter_topic], partitions=1)
        dead_letters = dlq.DeadLetterQueue(config, metrics=agent_metrics, delivery_timeout_s=2.0)
        try:
            dead_letters.send(records.Rejected(records.MALFORMED_JSON, "warm-up", b"{"), None)
            assert dead_letters.flush(timeout_s=10)

            own_broker.stop()
            for index in range(3):
                dead_letters.send(records.Rejected(records.WRONG_TYPE, "during outage", b"x%d" % index), None)
            assert not dead_letters.flush(timeout_s=0.5)
            assert dead_letters.pending == 3
            # The producer gives them back after its delivery timeout; they wait in our buffer.
            kafka_infra.wait_until(
                lambda: dead_letters.waiting_retry == 3, what="3 envelopes in the retry buffer"
            )
            assert registry.get_sample_value("drift_agent_dlq_pending") == 3

            own_broker.restart()
            # Memory storage forgets topics; a real cluster keeps them. (Tansu acknowledges
            # produce requests for a topic it lacks, so recreate it before anything is resent.)
            own_broker.create_topics([config.dead_letter_topic], partitions=1)
            kafka_infra.wait_until(lambda: dead_letters.flush(timeout_s=1.0), what="the DLQ to drain")
            assert dead_letters.dropped == 0
            # Memory storage: the restarted broker holds only what was sent after it came back.
            got = kafka_infra.read_topic(own_broker.bootstrap_servers, config.dead_letter_topic, 3)
            assert sorted(decode_original(json.loads(r.value)) for r in got) == [b"x0", b"x1", b"x2"]
            assert registry.get_sample_value("drift_agent_dlq_pending") == 0
        finally:
            dead_letters.close(timeout_s=2)


def test_an_unwritable_dead_letter_topic_stops_holding_back_commits_after_max_wait(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    kafka_infra.produce(
        bootstrap, topic_name, [helpers.prediction_json(0), b"{bad", helpers.prediction_json(2)], partition=0
    )
    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    # A group that tolerates the seconds each try to reach the dead-letter broker blocks the loop.
    config = helpers.kafka_settings(
        bootstrap,
        topic_name,
        dead_letter_max_wait_s=8.0,
        max_poll_interval_ms=60_000,
        session_timeout_ms=30_000,
    )
    # The dead-letter topic cannot be written (here: its broker never answers), so the one
    # rejected record can never be made durable.
    nowhere = config.model_copy(update={"bootstrap_servers": f"127.0.0.1:{processes.free_port()}"})
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
    stage = helpers.ingest_stage_of(
        nowhere, producer, agent_metrics, fragments_topic=f"{topic_name}.fragments"
    )
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    try:
        for message in helpers.poll_until(kafka_source, 3):
            stage.handle(message)
        assert not stage.make_durable(kafka_source)  # within max_wait_s: the commit waits for it
        assert kafka_source.committed(source.Partition(topic_name, 0)) is None

        def durable() -> bool:
            kafka_source.poll_batch()  # as the agent's loop does: it stays in the group meanwhile
            return stage.make_durable(kafka_source)

        kafka_infra.wait_until(durable, timeout_s=60, what="the commit to go on without it")
        assert kafka_source.committed(source.Partition(topic_name, 0)) == 3
        assert registry.get_sample_value("drift_agent_dlq_dropped_total", {"reason": "malformed_json"}) == 1
        assert registry.get_sample_value("drift_agent_dlq_pending") == 0
    finally:
        stage.dlq.close(timeout_s=1)
        producer.close(timeout=2)
        kafka_source.close()

"""Recorded CloudEvents through a real broker: headers survive KafkaSource, rejects reach the DLQ."""

from __future__ import annotations

import json

import kafka
import pytest

from agent.ingest import cloudevents, kserve, records
from agent.ingest import dead_letters as dlq
from agent.ingest import source as source_mod
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers as kafka_helpers
from tests.support.kserve import payloads

pytestmark = pytest.mark.integration

SENT = [
    "v1_binary_request",
    "v2_structured_response",
    "v1_binary_response",
    "malformed_wrong_type",
    "v2_structured_request",
    "unjoined_request",
]


def produce_payloads(bootstrap: str, topic: str, names: list[str]) -> None:
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for name in names:
            headers, value = payloads.load(name)
            producer.send(topic, value=value, headers=list(headers), partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def test_events_from_kafka_join_and_rejects_reach_the_dead_letter_topic(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    produce_payloads(bootstrap, topic_name, SENT)
    config = kafka_helpers.kafka_settings(bootstrap, topic_name)
    kafka_source = source_mod.KafkaSource(config)
    dead_letters = dlq.DeadLetterQueue(config)
    clock_now = [0.0]
    adapter = kserve.KServeAdapter(ttl_s=10.0, clock=lambda: clock_now[0])
    built: list[records.PredictionRecord] = []
    try:
        batch = kafka_helpers.poll_until(kafka_source, len(SENT))
        assert dict(batch[0].headers)["ce_type"] == cloudevents.REQUEST_TYPE.encode()
        for message in batch:
            result = adapter.add(message)
            if isinstance(result, records.Rejected):
                dead_letters.send(result, message)
            else:
                built.extend(result)
        clock_now[0] = 11.0
        for rejected in adapter.expire():
            dead_letters.send(rejected, None)
        assert dead_letters.flush(timeout_s=10)
        assert kafka_source.commit(batch)
    finally:
        dead_letters.close()
        kafka_source.close()

    assert sorted(r.request_id for r in built) == sorted(
        [f"e58f1edd-43bc-42f6-a10a-d1adb5cab831:{i}" for i in range(2)]
        + [f"5a0c2d61-7f0e-4d5f-9b7a-0c6f0b2f4d11:{i}" for i in range(3)]
    )
    envelopes = [json.loads(r.value) for r in kafka_infra.read_topic(bootstrap, config.dead_letter_topic, 2)]
    assert sorted(e["reason"] for e in envelopes) == [records.INVALID_VALUE, kserve.UNJOINED_REQUEST]
    unjoined = next(e for e in envelopes if e["reason"] == kserve.UNJOINED_REQUEST)
    assert "'lonely-request'" in unjoined["detail"]
    assert json.loads(unjoined["original"]) == {"instances": [[1.0, 2.0, 3.0, 4.0]]}

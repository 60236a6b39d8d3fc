"""Kafka -> KafkaSource -> RecordParser -> WindowManager, with bad records to the DLQ."""

from __future__ import annotations

import json

import numpy as np
import prometheus_client
import pytest

from agent import settings
from agent.ingest import dead_letters as dlq
from agent.ingest import parsing, records, source
from agent.observability import metrics
from agent.pipeline import reference, windows
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

WINDOW_SIZE = 10


def test_records_become_windows_and_bad_ones_dead_letters(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    good = [helpers.prediction_json(i) for i in range(25)]
    stream = [*good[:12], b"{broken", b'{"request_id": "x"}', *good[12:]]
    kafka_infra.produce(bootstrap, topic_name, stream, partition=0)

    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    config = helpers.kafka_settings(bootstrap, topic_name)
    parser = parsing.RecordParser()
    schema = reference.FeatureSchema.infer(
        r for r in map(parser.parse_prediction, good[:5]) if not isinstance(r, records.Rejected)
    )
    manager = windows.WindowManager(settings.WindowSettings(size=WINDOW_SIZE), schema)
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    dead_letters = dlq.DeadLetterQueue(config, metrics=agent_metrics)
    closed = []
    try:
        pending: list[source.RawMessage] = []
        while len(pending) < len(stream):
            batch = helpers.poll_until(kafka_source, 1)
            for message in batch:
                parsed = parser.parse_prediction(message.value)
                if isinstance(parsed, records.Rejected):
                    dead_letters.send(parsed, message)
                    continue
                agent_metrics.record_out()
                closed.extend(manager.add(parsed, message.offset))
            pending.extend(batch)
            assert dead_letters.flush(timeout_s=10)
            assert kafka_source.commit(batch)
    finally:
        dead_letters.close()
        kafka_source.close()

    assert [w.size for w in closed] == [WINDOW_SIZE, WINDOW_SIZE]
    # Offsets 12 and 13 were the bad records, so the second window ends at offset 21.
    assert [w.last_record_index for w in closed] == [9, 21]
    expected_f0 = [float(i % 7) for i in (*range(10, 12), *range(12, 20))]
    np.testing.assert_array_equal(closed[1].features["f0"], expected_f0)
    assert closed[0].model_version == "v1"
    assert registry.get_sample_value("drift_agent_records_out_total") == 25
    assert registry.get_sample_value("drift_agent_records_in_total", {"topic": topic_name}) == 27
    assert registry.get_sample_value("drift_agent_dlq_total", {"reason": records.MALFORMED_JSON}) == 1
    assert registry.get_sample_value("drift_agent_dlq_total", {"reason": records.MISSING_FIELD}) == 1
    envelopes = kafka_infra.read_topic(bootstrap, config.dead_letter_topic, 2)
    assert sorted(json.loads(r.value)["offset"] for r in envelopes) == [12, 13]

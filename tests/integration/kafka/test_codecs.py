"""Every Kafka compression codec, written by librdkafka and by drift_logger, read by the agent.

Services in Java, Go or C produce through librdkafka or the Java client and compress with gzip,
snappy, lz4 or zstd; kafka-python decodes all four only when their codec libraries are installed.
"""

from __future__ import annotations

import confluent_kafka
import pytest

import drift_logger
from agent.ingest import source
from demo import broker
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 200


def test_the_agent_reads_every_codec_a_librdkafka_producer_writes(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    for codec in CODECS:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": kafka_broker.bootstrap_servers,
                "compression.type": codec,
                "linger.ms": 50,  # batches of many records: what compression works on
            }
        )
        for i in range(PER_CODEC):
            producer.produce(topic_name, helpers.prediction_json(i), key=codec.encode(), partition=0)
        assert producer.flush(30) == 0, f"{codec}: records still unsent after 30 s"
    kafka_source = source.KafkaSource(helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name))
    try:
        got = helpers.poll_until(kafka_source, PER_CODEC * len(CODECS))
    finally:
        kafka_source.close()
    per_codec = {codec: sum(m.key == codec.encode() for m in got) for codec in CODECS}
    assert per_codec == dict.fromkeys(CODECS, PER_CODEC)
    assert {m.value for m in got} == {helpers.prediction_json(i) for i in range(PER_CODEC)}


@pytest.mark.parametrize("codec", CODECS)
def test_drift_logger_writes_every_codec_and_the_agent_reads_it(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, codec: str
) -> None:
    logger = drift_logger.PredictionLogger(
        kafka_broker.bootstrap_servers,
        topic_name,
        model_name="fraud",
        model_version="1",
        producer_config={"compression_type": codec},
    )
    for i in range(50):
        assert logger.log(f"req-{i}", {"x": float(i)}, prediction=i % 2)
    assert logger.close(timeout_s=30)
    assert logger.stats().sent == 50
    kafka_source = source.KafkaSource(helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name))
    try:
        got = helpers.poll_until(kafka_source, 50)
    finally:
        kafka_source.close()
    assert sorted(m.key or b"" for m in got) == sorted(f"req-{i}".encode() for i in range(50))

"""The fragment producer of each ``kafka.client`` (``agent.ingest.producers``), on a real broker.

The ingest stage commits its input only after its fragments are acknowledged: each client's
producer must say, after ``flush``, which sends the broker took, and deliver a partition's
records once and in order (the evaluator drops what is at or below what it already counted).
"""

from __future__ import annotations

import kafka
import pytest
from kafka import errors as kafka_errors

from agent.ingest import producers
from agent.runtime import acks
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

CLIENTS = ("kafka-python", "librdkafka")


def _values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    return [record.value for record in kafka_infra.read_topic(bootstrap, topic, count)]


@pytest.mark.parametrize("client", CLIENTS)
def test_sends_are_acknowledged_once_and_in_order(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.create_topics([topic_name], partitions=2)
    config = helpers.kafka_settings(bootstrap, topic_name, client=client)
    shared = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer = producers.fragment_producer(config, shared)
    assert isinstance(producer, producers.RdKafkaProducer) == (client == "librdkafka")
    try:
        sends = acks.PendingSends()
        deliveries = []
        # Fragment-sized messages, several per flush, as a checkpoint sends them.
        values = [f"{index:04d}".encode() * 50_000 for index in range(12)]
        for value in values:
            delivery = producer.send(topic_name, key=b"model", value=value, partition=1)
            sends.add(delivery)
            deliveries.append(delivery)
        producer.flush(timeout=30)
        assert all(delivery.is_done and not delivery.failed() for delivery in deliveries)
        assert sends.take_failure() is None
        assert _values(bootstrap, topic_name, len(values)) == values
    finally:
        producers.close_fragment_producer(producer, timeout=5)
        shared.close(timeout=5)


def test_a_librdkafka_send_refused_before_sending_fails_and_the_others_land(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.create_topics([topic_name], partitions=1)
    producer = producers.RdKafkaProducer(helpers.kafka_settings(bootstrap, topic_name))
    try:
        sends = acks.PendingSends()
        sends.add(producer.send(topic_name, key=b"m", value=b"before", partition=0))
        too_large = producer.send(
            topic_name, key=b"m", value=b"x" * (producers.MAX_REQUEST_BYTES + 1), partition=0
        )
        sends.add(too_large)
        sends.add(producer.send(topic_name, key=b"m", value=b"after", partition=0))
        producer.flush(timeout=30)
        assert too_large.failed()
        failure = sends.take_failure()
        assert failure is too_large.exception
        assert "MSG_SIZE_TOO_LARGE" in str(failure)
        assert _values(bootstrap, topic_name, 2) == [b"before", b"after"]
    finally:
        producer.close(timeout=5)


def test_a_librdkafka_send_the_broker_never_took_is_reported_after_the_flush(topic_name: str) -> None:
    with broker.EmbeddedBroker("127.0.0.1", 0) as own:
        own.create_topics([topic_name], partitions=1)
        config = helpers.kafka_settings(own.bootstrap_servers, topic_name)
        # Records give up after 3 s instead of librdkafka's 300 s.
        producer = producers.RdKafkaProducer(config, {"message.timeout.ms": 3000, "linger.ms": 1000})
        try:
            sends = acks.PendingSends()
            sends.add(producer.send(topic_name, key=b"m", value=b"acknowledged", partition=0))
            producer.flush(timeout=30)
            assert sends.take_failure() is None

            lost = producer.send(topic_name, key=b"m", value=b"lost", partition=0)
            sends.add(lost)
            own.stop()
            # Either the flush outlives the records (they fail) or the records outlive the flush.
            try:
                producer.flush(timeout=30)
            except kafka_errors.KafkaTimeoutError:
                pytest.fail("the record outlived a 30 s flush although it times out after 3 s")
            assert lost.failed()
            assert sends.take_failure() is lost.exception
        finally:
            producer.close(timeout=1)


def test_a_librdkafka_flush_that_times_out_raises_as_kafka_python_does(topic_name: str) -> None:
    with broker.EmbeddedBroker("127.0.0.1", 0) as own:
        own.create_topics([topic_name], partitions=1)
        producer = producers.RdKafkaProducer(helpers.kafka_settings(own.bootstrap_servers, topic_name))
        try:
            producer.send(topic_name, key=b"m", value=b"first", partition=0)
            producer.flush(timeout=30)
            own.stop()
            pending = producer.send(topic_name, key=b"m", value=b"pending", partition=0)
            with pytest.raises(kafka_errors.KafkaTimeoutError, match="1 records not sent"):
                producer.flush(timeout=1)
            assert not pending.is_done
        finally:
            producer.close(timeout=0)

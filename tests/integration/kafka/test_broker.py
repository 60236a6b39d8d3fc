"""EmbeddedBroker: a real Tansu process on loopback."""

from __future__ import annotations

import pathlib
import socket

import kafka
import pytest

from demo import broker
from tests.infra import kafka as kafka_infra

pytestmark = pytest.mark.integration


def test_start_answers_kafka_and_stop_releases_the_port(tmp_path: pathlib.Path) -> None:
    log_path = tmp_path / "broker.log"
    embedded = broker.EmbeddedBroker(log_path=log_path).start()
    try:
        assert embedded.running
        assert broker.answers_kafka(embedded.host, embedded.port)
        assert embedded.bootstrap_servers == f"127.0.0.1:{embedded.port}"
    finally:
        embedded.stop()
    assert not embedded.running
    assert not broker.answers_kafka(embedded.host, embedded.port)
    assert "listening on" in log_path.read_text()


def test_restart_comes_back_on_the_same_port() -> None:
    with broker.EmbeddedBroker() as embedded:
        port = embedded.port
        first_pid = embedded.pid
        embedded.restart()
        assert embedded.port == port
        assert embedded.pid != first_pid
        assert broker.answers_kafka("127.0.0.1", port)


def test_kill_then_start_again() -> None:
    with broker.EmbeddedBroker() as embedded:
        embedded.kill()
        assert not broker.answers_kafka("127.0.0.1", embedded.port)
        embedded.start()
        assert broker.answers_kafka("127.0.0.1", embedded.port)


def test_create_topics_makes_partitions_and_is_idempotent(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    kafka_broker.create_topics([topic_name], partitions=3)
    kafka_broker.create_topics([topic_name], partitions=3)
    consumer = kafka.KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        kafka_infra.wait_until(
            lambda: consumer.partitions_for_topic(topic_name) == {0, 1, 2}, what="3 partitions in metadata"
        )
    finally:
        consumer.close()


def test_a_taken_port_fails_start_with_the_broker_log() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        embedded = broker.EmbeddedBroker(port=port)
        with pytest.raises(broker.BrokerError, match="log tail") as caught:
            embedded.start(timeout_s=10)
        assert not embedded.running
        # The error carries what Tansu said, so a failed CI run explains itself.
        assert len(str(caught.value)) > len("log tail")

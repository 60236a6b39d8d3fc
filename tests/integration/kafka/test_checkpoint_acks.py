"""A checkpoint sees a failed send (``agent.runtime.acks``), on a real broker.

``KafkaProducer.flush`` returns when every record completed, failed ones included: a stage that
committed its input after a flush alone would commit past a lost fragment, state or action.
"""

from __future__ import annotations

import kafka
import prometheus_client
import pytest
from kafka import errors as kafka_errors

from agent.ingest import source
from agent.observability import metrics
from agent.runtime import acks
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration


def test_a_failed_send_is_reported_after_the_flush_and_acknowledged_ones_are_not(topic_name: str) -> None:
    with broker.EmbeddedBroker("127.0.0.1", 0) as own:
        own.create_topics([topic_name], partitions=1)
        producer = kafka.KafkaProducer(
            bootstrap_servers=own.bootstrap_servers,
            acks="all",
            linger_ms=1000,  # the records wait in the producer while the broker goes away
            request_timeout_ms=1000,
            delivery_timeout_ms=3000,
            retries=0,
        )
        try:
            sends = acks.PendingSends()
            for index in range(5):
                sends.add(producer.send(topic_name, f"acknowledged {index}".encode(), partition=0))
            producer.flush(timeout=30)
            assert sends.take_failure() is None

            for index in range(3):
                sends.add(producer.send(topic_name, f"lost {index}".encode(), partition=0))
            own.stop()
            producer.flush(timeout=30)  # returns without raising: the failure is only on the futures
            failure = sends.take_failure()
            assert isinstance(failure, kafka_errors.KafkaError), failure
            # Forgotten once taken: the next checkpoint judges its own sends.
            assert sends.take_failure() is None
        finally:
            producer.close(timeout=1)


def test_the_ingest_stage_reads_again_what_a_failed_checkpoint_held(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    # Input on the session broker; fragments on a broker of the test's own, which goes away
    # between the records' arrival and the checkpoint: the fragments of those records are lost.
    bootstrap = kafka_broker.bootstrap_servers
    kafka_infra.produce(bootstrap, topic_name, [helpers.prediction_json(i) for i in range(30)], partition=0)
    # A poll interval well past the failed flush: the group must not rebalance (a rejoin would
    # read from the last commit too, and hide whether the stage rewinds by itself).
    config = helpers.kafka_settings(
        bootstrap, topic_name, max_poll_interval_ms=30_000, session_timeout_ms=10_000
    )
    agent_metrics = metrics.AgentMetrics(prometheus_client.CollectorRegistry())
    with broker.EmbeddedBroker("127.0.0.1", 0) as fragments_broker:
        fragments_topic = f"{topic_name}.fragments"
        fragments_broker.create_topics([fragments_topic], partitions=1)
        producer = kafka.KafkaProducer(
            bootstrap_servers=fragments_broker.bootstrap_servers,
            acks="all",
            request_timeout_ms=1000,
            delivery_timeout_ms=3000,
            max_block_ms=3000,
            retries=0,
        )
        producer.send(fragments_topic, b"warm-up", partition=0).get(timeout=10)  # metadata known
        stage = helpers.ingest_stage_of(config, producer, agent_metrics, fragments_topic=fragments_topic)
        kafka_source = source.KafkaSource(config, metrics=agent_metrics)
        try:
            first = helpers.poll_until(kafka_source, 30)
            for message in first:
                stage.handle(message)
            fragments_broker.stop()
            assert stage.make_durable(kafka_source) is False
            # Nothing committed, and the partition is read again from the first record held.
            assert kafka_source.committed(source.Partition(topic_name, 0)) is None
            again = helpers.poll_until(kafka_source, 30)
            assert [m.offset for m in again] == [m.offset for m in first] == list(range(30))
        finally:
            kafka_source.close()
            stage.dlq.close(timeout_s=1)
            producer.close(timeout=1)

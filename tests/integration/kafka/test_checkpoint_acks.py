"""A checkpoint sees a failed send (``agent.runtime.acks``), on a real broker.

``KafkaProducer.flush`` returns when every record completed, failed ones included: a stage that
committed its input after a flush alone would commit past a lost fragment, state or action.
"""

from __future__ import annotations

import kafka
import pytest
from kafka import errors as kafka_errors

from agent.runtime import acks
from demo import broker

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

"""Kafka helpers for integration tests: produce, read a topic back, wait on a condition.

Every wait is a deadline-bounded polling loop: a test that fails, fails in bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import kafka

DEFAULT_TIMEOUT_S = 30.0


def wait_until(
    condition: Callable[[], bool], timeout_s: float = DEFAULT_TIMEOUT_S, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def produce(
    bootstrap_servers: str,
    topic: str,
    values: Iterable[bytes],
    *,
    partition: int | None = None,
    key: bytes | None = None,
) -> int:
    """Produce every value (acks=all) and wait for all acks; returns how many were sent."""
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, value=value, key=key, partition=partition) for value in values]
        producer.flush(timeout=DEFAULT_TIMEOUT_S)
        for future in futures:
            future.get(timeout=DEFAULT_TIMEOUT_S)
        return len(futures)
    finally:
        producer.close(timeout=5)


def read_topic(
    bootstrap_servers: str, topic: str, expected: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[kafka.consumer.fetcher.ConsumerRecord]:
    """Read ``topic`` from the beginning (no group) until ``expected`` records arrived."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions: list[kafka.TopicPartition] = []
        while not partitions:
            found = consumer.partitions_for_topic(topic)
            if found:
                partitions = [kafka.TopicPartition(topic, p) for p in sorted(found)]
            elif time.monotonic() >= deadline:
                raise AssertionError(f"topic {topic!r} did not appear within {timeout_s:.0f}s")
            else:
                time.sleep(0.05)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[kafka.consumer.fetcher.ConsumerRecord] = []
        while len(records) < expected:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"read {len(records)} of {expected} records from {topic!r} in {timeout_s:.0f}s"
                )
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()

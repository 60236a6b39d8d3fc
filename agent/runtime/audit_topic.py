"""A copy of every audit line on a Kafka topic (``audit.kafka_topic``); the JSONL file is the record.

The copy never holds up a decision: a send blocks at most ``SEND_MAX_BLOCK_MS`` (the producer
is created on first use, and again after a failure, with the consumer's backoff), and a copy the
broker did not take is counted in ``drift_agent_audit_copies_lost_total`` (alert
``DriftAgentAuditCopiesLost``) and logged once a minute, never retried: the file has the line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import kafka
import prometheus_client
from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.ingest import connection, source
from agent.observability import errors
from agent.observability import metrics as metrics_mod

log = logging.getLogger(__name__)

SEND_MAX_BLOCK_MS = 1000
DELIVERY_TIMEOUT_MS = 30_000
LOSS_LOG_INTERVAL_S = 60.0
# kafka-python 3 has no bound on its unsent records in bytes (buffer_memory is gone): this is ours.
DEFAULT_BUFFER_BYTES = 32 * 1024 * 1024


class AuditProducer:
    """Publishes audit lines to ``audit.kafka_topic`` asynchronously; never raises, never blocks long."""

    def __init__(
        self,
        kafka_settings: settings_mod.KafkaSettings,
        topic: str,
        *,
        registry: prometheus_client.CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        """``buffer_bytes``: the most bytes of copies sent but not yet acknowledged (the audit share
        of ``memory.budget_mib``); a copy that finds them full is lost and counted, the file has it."""
        self._topic = topic
        self._buffer_bytes = buffer_bytes
        self.unacknowledged_bytes = 0
        self._connection = connection.connection_config(kafka_settings)
        self._backoff = source.Backoff(
            kafka_settings.reconnect_backoff_initial_s, kafka_settings.reconnect_backoff_max_s, clock
        )
        self._clock = clock
        self._producer: kafka.KafkaProducer | None = None
        self._lock = threading.Lock()  # the loop sends; the producer's I/O thread reports failures
        self.lost = 0
        self._lost_logged_at = float("-inf")
        self._lost_counter = prometheus_client.Counter(
            metrics_mod.PREFIX + "audit_copies_lost_total",
            "Audit lines the audit topic did not take (broker away, topic missing or not writable); "
            "the audit file still has them.",
            registry=registry,
        )

    def send(self, line: bytes) -> None:
        producer = self._ensure_producer()
        if producer is None:
            self._count_lost("the audit topic's broker is not reachable")
            return
        size = len(line)
        with self._lock:
            full = self.unacknowledged_bytes + size > self._buffer_bytes
            if not full:
                self.unacknowledged_bytes += size
        if full:
            self._count_lost(
                f"{self._buffer_bytes} bytes of copies wait for the broker (the audit share of memory)"
            )
            return
        try:
            future = producer.send(self._topic, line)
        except kafka_errors.KafkaError as exc:
            self._settled(size, errors.describe(exc))
            return
        future.add_callback(lambda _: self._settled(size))
        future.add_errback(lambda exc: self._settled(size, errors.describe(exc)))

    def _settled(self, size: int, lost: str | None = None) -> None:
        """A copy the broker took, or (``lost``: why) did not: its bytes no longer wait."""
        with self._lock:
            self.unacknowledged_bytes -= size
        if lost is not None:
            self._count_lost(lost)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)

    def _ensure_producer(self) -> kafka.KafkaProducer | None:
        if self._producer is not None:
            return self._producer
        self._producer = source.producer_with_backoff(
            self._connection,
            self._backoff,
            "audit-topic",
            acks="all",
            max_block_ms=SEND_MAX_BLOCK_MS,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            request_timeout_ms=DELIVERY_TIMEOUT_MS // 2,
            bootstrap_timeout_ms=SEND_MAX_BLOCK_MS,
        )
        return self._producer

    def _count_lost(self, why: str) -> None:
        self._lost_counter.inc()
        now = self._clock()
        with self._lock:
            self.lost += 1
            if now - self._lost_logged_at < LOSS_LOG_INTERVAL_S:
                return
            self._lost_logged_at = now
            lost = self.lost
        log.warning(
            "audit line not copied to topic %r (%s); the audit file has it (%d copies lost so far)",
            self._topic,
            why,
            lost,
        )


def audit_producer(
    kafka_settings: settings_mod.KafkaSettings,
    config: settings_mod.AuditSettings,
    registry: prometheus_client.CollectorRegistry | None = None,
    *,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> AuditProducer | None:
    if not config.kafka_topic:
        return None
    return AuditProducer(kafka_settings, config.kafka_topic, registry=registry, buffer_bytes=buffer_bytes)

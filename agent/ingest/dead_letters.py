"""Dead-letter queue: rejected records go to a Kafka topic with the reason, never silently away.

A rejected record counts as durable once the DLQ topic has it, so the pipeline calls
``flush`` before committing the batch's offsets. While the DLQ topic is unreachable, envelopes
wait in a bounded in-memory buffer; when that overflows, the oldest are dropped, counted in
``drift_agent_dlq_dropped_total`` and logged at ERROR. The wait is bounded in time too: an
envelope the topic has not taken after ``max_wait_s`` (a topic that is missing, or that the agent
may not write) is dropped the same way, so the offsets can be committed and the agent goes on
(the ``DriftAgentDeadLettersLost`` alert fires) instead of re-reading the same records forever.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kafka
from kafka import errors as kafka_errors

from agent import settings
from agent.ingest import connection, records, source
from agent.observability import collectors, errors
from agent.observability import metrics as metrics_mod

log = logging.getLogger(__name__)

WallClock = Callable[[], float]
REASON_HEADER = "drift-agent-reason"
DEFAULT_MAX_PENDING = 10_000
# The retry buffer's bound in bytes too: 10 000 oversize envelopes (64 KiB of original each)
# would be 640 MiB.
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_WAIT_S = 300.0
BUFFER_NAME = "dead_letters"  # its share of memory.budget_mib, and its label on the buffer metrics
# Oversize records would make oversize envelopes: keep a prefix, enough to debug the producer.
DEFAULT_MAX_ORIGINAL_BYTES = 64 * 1024
# Errors about the envelope itself, not the broker's state.
_REFUSED_FOR_GOOD = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidRecordError,
    kafka_errors.CorruptRecordError,
)
# The loop must not stall when the broker is away; a short block then the retry buffer.
SEND_MAX_BLOCK_MS = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    reason: str
    payload: bytes
    key: bytes | None
    queued_at: float  # monotonic seconds of the first send


def envelope(
    rejected: records.Rejected,
    origin: source.RawMessage | None,
    *,
    agent_time: float,
    max_original_bytes: int = DEFAULT_MAX_ORIGINAL_BYTES,
) -> dict[str, Any]:
    """The JSON object written to the dead-letter topic for one rejected record."""
    raw = rejected.raw
    kept = raw[:max_original_bytes]
    try:
        original: str = kept.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        original = base64.b64encode(kept).decode("ascii")
        encoding = "base64"
    return {
        "reason": rejected.reason,
        "detail": rejected.detail,
        "topic": origin.topic if origin is not None else None,
        "partition": origin.partition if origin is not None else None,
        "offset": origin.offset if origin is not None else None,
        "timestamp_ms": origin.timestamp_ms if origin is not None else None,
        "original": original,
        "original_encoding": encoding,
        "original_size": len(raw),
        "original_truncated": len(kept) < len(raw),
        "agent_time": datetime.datetime.fromtimestamp(agent_time, tz=datetime.UTC).isoformat(),
    }


class DeadLetterQueue:
    """Produces rejected records to ``kafka.dead_letter_topic`` (acks=all)."""

    def __init__(
        self,
        kafka_settings: settings.KafkaSettings,
        *,
        metrics: metrics_mod.AgentMetrics | None = None,
        wall_clock: WallClock = time.time,
        monotonic: source.Clock = time.monotonic,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_original_bytes: int = DEFAULT_MAX_ORIGINAL_BYTES,
        delivery_timeout_s: float = 30.0,
        bootstrap_timeout_s: float = source.BOOTSTRAP_TIMEOUT_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_wait_s = max_wait_s
        self.max_pending_bytes = max_pending_bytes
        self._monotonic = monotonic
        self.topic = kafka_settings.dead_letter_topic
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.max_pending = max_pending
        self.max_original_bytes = max_original_bytes
        self._connection = connection.connection_config(kafka_settings)
        self._delivery_timeout_ms = int(delivery_timeout_s * 1000)
        self._bootstrap_timeout_ms = int(bootstrap_timeout_s * 1000)
        self._producer: kafka.KafkaProducer | None = None
        self._backoff = source.Backoff(
            kafka_settings.reconnect_backoff_initial_s, kafka_settings.reconnect_backoff_max_s, monotonic
        )
        # Touched by the producer's I/O thread (delivery callbacks) and the loop thread.
        self._lock = threading.Lock()
        self._retry: collections.deque[_Pending] = collections.deque()
        self._retry_bytes = 0
        self._in_flight = 0
        self._reset_producer = False
        self.dropped = 0
        if metrics is not None:
            collectors.register_gauge(
                metrics.registry, collectors.DLQ_PENDING, lambda: [((), float(self.pending))]
            )
            metrics.hold_bytes(BUFFER_NAME, lambda: float(self._retry_bytes))

    @property
    def pending(self) -> int:
        """Envelopes not yet acknowledged by the broker (in flight or waiting to retry)."""
        with self._lock:
            return self._in_flight + len(self._retry)

    @property
    def waiting_retry(self) -> int:
        """Envelopes the producer gave back (broker away): ``flush`` sends them again."""
        with self._lock:
            return len(self._retry)

    def send(self, rejected: records.Rejected, origin: source.RawMessage | None) -> None:
        """Queue one rejected record for the DLQ topic; never raises for broker trouble."""
        body = envelope(
            rejected, origin, agent_time=self.wall_clock(), max_original_bytes=self.max_original_bytes
        )
        item = _Pending(
            rejected.reason,
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            _key(origin),
            self._monotonic(),
        )
        if self.metrics is not None:
            self.metrics.dead_lettered(rejected.reason)
        log.info(
            "dead-lettered record (%s) from %s: %s",
            rejected.reason,
            f"{origin.topic}[{origin.partition}]@{origin.offset}" if origin else "(no source)",
            rejected.detail,
        )
        with self._lock:
            behind_others = bool(self._retry)
        if behind_others:
            # An outage is on: keep order and do not block the loop once per record; flush()
            # retries the buffer.
            self._buffer(item)
        else:
            self._produce(item)

    def flush(self, timeout_s: float) -> bool:
        """Retry buffered envelopes and wait for acks; True when nothing is pending.

        Envelopes still buffered ``max_wait_s`` after their first send are dropped (counted): they
        no longer hold back the commit.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._retry:
                    break
                item = self._retry.popleft()
                self._retry_bytes -= len(item.payload)
            if not self._produce(item):
                break  # still unreachable: the rest stays buffered for the next flush
        producer = self._producer
        if producer is not None:
            try:
                producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            except kafka_errors.KafkaError as exc:
                log.warning("dead-letter flush incomplete: %s", errors.describe(exc))
        self._give_up_on_stale()
        return self.pending == 0

    def _give_up_on_stale(self) -> None:
        cutoff = self._monotonic() - self.max_wait_s
        with self._lock:
            stale = [item for item in self._retry if item.queued_at <= cutoff]
            if stale:
                self._retry = collections.deque(item for item in self._retry if item.queued_at > cutoff)
                self._retry_bytes = sum(len(item.payload) for item in self._retry)
                self.dropped += len(stale)
        if not stale:
            return
        for item in stale:
            if self.metrics is not None:
                self.metrics.dead_letter_dropped(item.reason)
        log.error(
            "%d dead-letter record(s) LOST: the dead-letter topic %r did not take them within %.0f s "
            "(missing, not writable by the agent, or the broker is away); their offsets are committed "
            "so the agent goes on. Create the topic or grant the agent Write on it",
            len(stale),
            self.topic,
            self.max_wait_s,
        )

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)
        with self._lock:
            left = len(self._retry) + self._in_flight
        if left:
            log.error("closing the dead-letter queue with %d record(s) not delivered", left)

    def _produce(self, item: _Pending) -> bool:
        """Hand one envelope to the producer; False when it went (back) to the retry buffer."""
        producer = self._ensure_producer()
        if producer is None:
            self._buffer(item, front=True)
            return False
        try:
            future = producer.send(
                self.topic, value=item.payload, key=item.key, headers=[(REASON_HEADER, item.reason.encode())]
            )
        except kafka_errors.KafkaError as exc:
            log.warning("dead-letter send deferred (%s)", errors.describe(exc))
            self._buffer(item, front=True)
            return False
        with self._lock:
            self._in_flight += 1
        future.add_callback(self._delivered)
        future.add_errback(self._failed, item)
        return True

    def _delivered(self, _metadata: object) -> None:
        with self._lock:
            self._in_flight -= 1

    def _failed(self, item: _Pending, exc: BaseException) -> None:
        with self._lock:
            self._in_flight -= 1
        if isinstance(exc, _REFUSED_FOR_GOOD):
            # Retrying this envelope can never succeed; keeping it would only fill the buffer.
            self._drop(item, f"broker refused it: {errors.describe(exc)}")
            return
        if isinstance(exc, kafka_errors.KafkaError) and not exc.retriable:
            # The producer itself may be stuck (e.g. a broker that lost its state): start afresh.
            self._reset_producer = True
        self._buffer(item)

    def _buffer(self, item: _Pending, *, front: bool = False) -> None:
        evicted: list[_Pending] = []
        with self._lock:
            if front:
                self._retry.appendleft(item)
            else:
                self._retry.append(item)
            self._retry_bytes += len(item.payload)
            # The oldest go first; one envelope always stays, even alone over the byte bound.
            while len(self._retry) > 1 and (
                len(self._retry) > self.max_pending or self._retry_bytes > self.max_pending_bytes
            ):
                oldest = self._retry.popleft()
                self._retry_bytes -= len(oldest.payload)
                evicted.append(oldest)
        for oldest in evicted:
            if self.metrics is not None:
                self.metrics.buffer_evicted(BUFFER_NAME)
            self._drop(
                oldest,
                f"retry buffer full ({self.max_pending} records or {self.max_pending_bytes} bytes, "
                "its share of memory.budget_mib)",
            )

    def _drop(self, item: _Pending, why: str) -> None:
        with self._lock:
            self.dropped += 1
        if self.metrics is not None:
            self.metrics.dead_letter_dropped(item.reason)
        log.error("dead-letter record (%s) LOST: %s", item.reason, why)

    def _ensure_producer(self) -> kafka.KafkaProducer | None:
        if self._reset_producer and self._producer is not None:
            self._reset_producer = False
            stale, self._producer = self._producer, None
            log.warning("dead-letter producer hit a fatal error; creating a new one")
            stale.close(timeout=0)
        if self._producer is not None:
            return self._producer
        self._producer = source.producer_with_backoff(
            self._connection,
            self._backoff,
            "dead-letter",
            acks="all",
            # No producer-id state to lose when a broker restarts; a duplicate dead letter is
            # harmless (the DLQ is at-least-once like the rest of the agent).
            enable_idempotence=False,
            linger_ms=5,
            max_block_ms=SEND_MAX_BLOCK_MS,
            delivery_timeout_ms=self._delivery_timeout_ms,
            request_timeout_ms=max(1000, min(self._delivery_timeout_ms // 2, 30_000)),
            bootstrap_timeout_ms=self._bootstrap_timeout_ms,
        )
        return self._producer


def _key(origin: source.RawMessage | None) -> bytes | None:
    return origin.key if origin is not None else None

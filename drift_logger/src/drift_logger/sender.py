"""A bounded buffer and the one background thread that hands its records to a Kafka producer.

The request path only appends to the buffer under a short lock. Everything that can wait on
the network (creating the producer, ``send`` waiting for metadata, flushing) runs on the
sender thread or in the producer's own I/O thread. Records held by the logger (buffered plus
handed to the producer and not yet acknowledged) never exceed ``max_buffer``: a record that
would pass that bound is dropped and counted, and nothing else is ever dropped for lack of room.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Errors about the record itself: retrying can never succeed (names, so kafka stays unimported).
_REFUSED_FOR_GOOD = frozenset(
    {"MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidRecordError", "CorruptRecordError"}
)
# An idle sender still wakes up this often, so a lost wake-up can only delay, never strand, records.
IDLE_WAIT_S = 1.0


class SendFuture(Protocol):
    def add_callback(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The part of ``kafka.KafkaProducer`` the sender uses."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> SendFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


ProducerFactory = Callable[[], Producer]
# Turns one buffered item into (value, key); raising drops the item as invalid.
Encoder = Callable[[Any], tuple[bytes, bytes | None]]


def kafka_producer_factory(
    bootstrap_servers: str | Sequence[str],
    *,
    linger_ms: int,
    client_id: str = "drift-logger",
    overrides: dict[str, Any] | None = None,
) -> ProducerFactory:
    """A factory of ``kafka.KafkaProducer`` with acks=1, no compression and short blocking bounds.

    ``overrides`` go to the producer as they are (TLS, SASL, ``delivery_timeout_ms``...).
    """
    servers = (
        [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        if isinstance(bootstrap_servers, str)
        else list(bootstrap_servers)
    )
    config: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": client_id,
        "acks": 1,
        # Idempotence needs acks=all; a duplicate log record is harmless (the agent is at-least-once).
        "enable_idempotence": False,
        "compression_type": None,
        "linger_ms": linger_ms,
        # These bound how long the sender thread (never a request) can wait on a broker.
        "max_block_ms": 2000,
        "bootstrap_timeout_ms": 3000,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": 30_000,
    }
    config.update(overrides or {})

    def make() -> Producer:
        import kafka  # noqa: PLC0415 - optional at import time: the package must load without it

        producer: Producer = kafka.KafkaProducer(**config)
        return producer

    return make


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A record already serialised (a failed send waiting for its retry)."""

    value: bytes
    key: bytes | None


@dataclasses.dataclass(slots=True)
class Counters:
    logged: int = 0
    sampled_out: int = 0
    sent: int = 0
    send_errors: int = 0
    connect_errors: int = 0
    dropped_buffer_full: int = 0
    dropped_invalid: int = 0
    dropped_on_close: int = 0
    peak_held: int = 0


class BufferedSender:
    """Owns the buffer, the sender thread and the producer. Thread-safe."""

    def __init__(
        self,
        producer_factory: ProducerFactory,
        topic: str,
        encode: Encoder,
        *,
        max_buffer: int,
        batch_size: int,
        linger_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = producer_factory
        self._topic = topic
        self._encode = encode
        self.max_buffer = max_buffer
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = max(backoff_max_s, backoff_initial_s)
        self._monotonic = monotonic
        self.counters = Counters()
        self.lock = threading.Lock()
        self._drained = threading.Condition(self.lock)
        self._buffer: collections.deque[Any] = collections.deque()
        self._in_flight = 0
        self._wake = threading.Event()  # a record arrived in an empty buffer, or a retry is due
        self._batch_ready = threading.Event()  # skip the linger: a batch is full, or closing
        self._stopping = threading.Event()
        self._flushing = False
        self._failures = 0
        self._resume_at = 0.0
        self._producer: Producer | None = None
        self._reset_producer = False
        self._thread = threading.Thread(target=self._run, name=f"drift-logger-sender[{topic}]", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def offer(self, item: Any) -> bool:
        """Buffer one record; False (counted) when the logger already holds ``max_buffer``."""
        with self.lock:
            buffered = len(self._buffer)
            held = buffered + self._in_flight
            counters = self.counters
            if held >= self.max_buffer:
                counters.dropped_buffer_full += 1
                return False
            self._buffer.append(item)
            counters.logged += 1
            if held >= counters.peak_held:
                counters.peak_held = held + 1
        if buffered == 0:
            self._wake.set()
        elif buffered + 1 == self._batch_size:
            self._batch_ready.set()
        return True

    def count_sampled_out(self) -> None:
        """The hot path of a sampled-out request: one locked increment."""
        with self.lock:
            self.counters.sampled_out += 1

    def count(self, field: str) -> None:
        """Add one to a counter from the request path (sampled out, invalid input)."""
        with self.lock:
            setattr(self.counters, field, getattr(self.counters, field) + 1)

    def snapshot(self) -> tuple[Counters, int, int]:
        """A copy of the counters, the buffered count and the in-flight count, taken together."""
        with self.lock:
            return dataclasses.replace(self.counters), len(self._buffer), self._in_flight

    def close(self, timeout_s: float) -> bool:
        """Send what is held within ``timeout_s``; True when every record was acknowledged."""
        deadline = self._monotonic() + max(0.0, timeout_s)
        with self.lock:
            self._flushing = True
        self._batch_ready.set()
        self._wake.set()
        with self._drained:
            while self._buffer or self._in_flight:
                left = deadline - self._monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                self._drained.wait(min(left, 0.1))
        self._stopping.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - self._monotonic()) + 0.5)
        producer, self._producer = self._producer, None
        if producer is not None:
            self._close_producer(producer, max(0.0, deadline - self._monotonic()))
        with self.lock:
            left_over = len(self._buffer) + self._in_flight
            self.counters.dropped_on_close += left_over
            self._buffer.clear()
            self._in_flight = 0
        if left_over:
            log.warning("prediction logger closed with %d record(s) not delivered", left_over)
        return left_over == 0

    # -- sender thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_WAIT_S)
            self._wake.clear()
            if self._stopping.is_set():
                return
            if not self._flushing:
                # Let a batch gather (the producer batches too; this keeps wake-ups per second low).
                self._batch_ready.wait(self._linger_s)
            self._batch_ready.clear()
            try:
                while self._drain_once():
                    pass
            except Exception:  # the thread must survive anything; records stay buffered
                log.exception("prediction logger sender failed; retrying")
                self._back_off()

    def _drain_once(self) -> bool:
        """Hand one batch to the producer; True while there is more to do now."""
        if self._stopping.is_set() or not self._buffer:
            return False
        wait = self._resume_at - self._monotonic()
        if wait > 0:
            self._stopping.wait(wait)
            return True
        producer = self._ensure_producer()
        if producer is None:
            return True
        with self.lock:
            batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
            self._in_flight += len(batch)
        for index, item in enumerate(batch):
            try:
                value, key = (item.value, item.key) if isinstance(item, Encoded) else self._encode(item)
            except Exception as exc:
                self._settle(dropped_invalid=1)
                log.warning("prediction log record dropped: cannot serialise it (%s)", exc)
                continue
            try:
                future = producer.send(self._topic, value=value, key=key)
            except Exception as exc:
                # Usually no metadata within max_block_ms: the broker is away. Keep the order.
                self._requeue([Encoded(value, key), *batch[index + 1 :]], exc)
                return True
            future.add_callback(self._delivered)
            future.add_errback(self._failed, Encoded(value, key))
        return bool(self._buffer)

    def _ensure_producer(self) -> Producer | None:
        if self._reset_producer and self._producer is not None:
            self._reset_producer = False
            stale, self._producer = self._producer, None
            log.warning("prediction logger producer hit a fatal error; creating a new one")
            self._close_producer(stale, 0.0)
        if self._producer is None:
            try:
                self._producer = self._factory()
            except Exception as exc:
                with self.lock:
                    self.counters.connect_errors += 1
                delay = self._back_off()
                log.warning(
                    "prediction logger cannot create its Kafka producer (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                return None
        return self._producer

    def _requeue(self, items: list[Any], exc: BaseException) -> None:
        with self.lock:
            self.counters.send_errors += 1
            self._in_flight -= len(items)
            self._buffer.extendleft(reversed(items))
        delay = self._back_off()
        log.warning(
            "prediction log send deferred (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
        )

    def _back_off(self) -> float:
        delay = min(self._backoff_max_s, self._backoff_initial_s * (2.0**self._failures))
        self._failures += 1
        self._resume_at = self._monotonic() + delay
        return delay

    @staticmethod
    def _close_producer(producer: Producer, timeout_s: float) -> None:
        try:
            producer.flush(timeout=timeout_s)
        except Exception as exc:
            log.warning("prediction logger flush incomplete: %s: %s", type(exc).__name__, exc)
        try:
            producer.close(timeout=timeout_s)
        except Exception as exc:
            log.warning("closing the prediction logger producer: %s: %s", type(exc).__name__, exc)

    # -- producer I/O thread (delivery callbacks) -------------------------------------------

    def _delivered(self, _metadata: object) -> None:
        self._failures = 0
        self._settle(sent=1)

    def _failed(self, item: Encoded, exc: BaseException) -> None:
        if type(exc).__name__ in _REFUSED_FOR_GOOD:
            log.warning("prediction log record refused by the broker for good: %s", exc)
            self._settle(dropped_invalid=1)
            return
        if not getattr(exc, "retriable", True):
            self._reset_producer = True
        # It was counted as held while in flight, so there is always room to take it back.
        with self._drained:
            self.counters.send_errors += 1
            self._in_flight -= 1
            self._buffer.appendleft(item)
        self._back_off()
        self._wake.set()

    def _settle(self, *, sent: int = 0, dropped_invalid: int = 0) -> None:
        with self._drained:
            self._in_flight -= sent + dropped_invalid
            self.counters.sent += sent
            self.counters.dropped_invalid += dropped_invalid
            if not self._in_flight and not self._buffer:
                self._drained.notify_all()

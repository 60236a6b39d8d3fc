"""The producer of window fragments, on the client ``kafka.client`` names.

The ingest stage hands every record it accepts to its model's evaluator in a fragment: about
1.9 kB a record at 200 features. kafka-python builds record batches in Python: producing them
(acks=all) costs 8.4 us of CPU a record, against 3.8 on librdkafka, which builds and sends them
in C threads (``python -m bench.ingest_wide``, the "producing fragments" line; in the
whole ingest loop the CPU saved is within the machine's noise, the wall-clock rate is higher).
So with ``kafka.client: librdkafka`` the ingest stage publishes its fragments through librdkafka.
The agent's other sends (state, actions, journal, dead letters, audit: a few per window, not
per record) stay on the one shared kafka-python producer.

Both keep kafka-python's contract that the ingest stage and ``runtime.acks`` rely on: ``send``
returns an outcome which, once ``flush`` has returned, says whether the broker took the record;
``flush`` raises ``KafkaTimeoutError`` when records are still unsent at its timeout; a send that
waits for room in a full buffer longer than ``MAX_BLOCK_S`` fails instead of blocking forever.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, Protocol

import confluent_kafka
import kafka
from kafka import errors as kafka_errors

from agent import settings
from agent.ingest import connection, rdkafka_source

# What the shared producer is given (``agent.app``): one message may be a whole fragment part.
MAX_REQUEST_BYTES: Final = 16 * 2**20
# Records waiting to be sent, bounded like kafka-python's ``buffer_memory`` (32 MiB).
BUFFER_KIB: Final = 32 * 1024
# kafka-python's ``max_block_ms``: how long ``send`` waits for room in a full buffer.
MAX_BLOCK_S: Final = 60.0
_ROOM_POLL_S: Final = 0.05


class Delivery(Protocol):
    """What a send became: kafka-python's ``FutureRecordMetadata`` has this shape."""

    is_done: bool
    exception: Any

    def failed(self) -> bool: ...


class FragmentProducer(Protocol):
    def send(self, topic: str, *, key: bytes, value: bytes, partition: int) -> Delivery: ...

    def flush(self, timeout: float | None = None) -> None: ...


class _RdKafkaDelivery:
    """Settled by librdkafka's delivery report, which runs inside ``flush`` on the caller's thread."""

    __slots__ = ("exception", "is_done")

    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def settle(self, error: confluent_kafka.KafkaError | None, _message: object = None) -> None:
        self.is_done = True
        if error is not None:
            self.exception = confluent_kafka.KafkaException(error)

    def fail(self, error: BaseException) -> _RdKafkaDelivery:
        self.is_done = True
        self.exception = error
        return self


class RdKafkaProducer:
    """A librdkafka producer with kafka-python's ``send`` and ``flush``: acks=all, idempotent
    (kafka-python's default too: records of a partition land once and in order, which the
    evaluator's duplicate check relies on)."""

    def __init__(
        self, kafka_settings: settings.KafkaSettings, properties: Mapping[str, Any] | None = None
    ) -> None:
        """``properties``: librdkafka producer properties over these (tests shorten timeouts)."""
        self._producer = confluent_kafka.Producer(
            {
                **rdkafka_source.client_properties(connection.connection_config(kafka_settings)),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": MAX_REQUEST_BYTES,
                "queue.buffering.max.kbytes": BUFFER_KIB,
                **(properties or {}),
            }
        )

    def send(self, topic: str, *, key: bytes, value: bytes, partition: int) -> Delivery:
        delivery = _RdKafkaDelivery()
        deadline = time.monotonic() + MAX_BLOCK_S
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=delivery.settle)
            except BufferError:  # the buffer is full: serve delivery reports until there is room
                if time.monotonic() >= deadline:
                    full = f"no room in the producer's buffer in {MAX_BLOCK_S:.0f}s"
                    return delivery.fail(kafka_errors.KafkaTimeoutError(full))
                self._producer.poll(_ROOM_POLL_S)
                continue
            except confluent_kafka.KafkaException as exc:  # refused before sending (too large, ...)
                return delivery.fail(exc)
            return delivery

    def flush(self, timeout: float | None = None) -> None:
        unsent = self._producer.flush(-1 if timeout is None else timeout)
        if unsent:
            raise kafka_errors.KafkaTimeoutError(f"{unsent} records not sent within {timeout}s")

    def close(self, timeout: float | None = None) -> None:
        """Sends what is buffered (within ``timeout``); what is not sent by then is dropped."""
        self._producer.flush(-1 if timeout is None else timeout)


def fragment_producer(
    kafka_settings: settings.KafkaSettings, shared: kafka.KafkaProducer
) -> FragmentProducer:
    """The producer the ingest stage publishes fragments with: ``shared`` on kafka-python, its own
    on librdkafka."""
    if kafka_settings.client == "librdkafka":
        return RdKafkaProducer(kafka_settings)
    return shared  # type: ignore[no-any-return]


def close_fragment_producer(producer: FragmentProducer, timeout: float) -> None:
    """Closes a producer that ``fragment_producer`` opened for the stage; the shared one is left
    to its owner."""
    if isinstance(producer, RdKafkaProducer):
        producer.close(timeout=timeout)

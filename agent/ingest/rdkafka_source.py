"""The consumer-group source on librdkafka (``kafka.client: librdkafka``).

kafka-python decodes every record batch in Python: at 200 features (4.5 kB a record) its bare
poll loop costs about 22 us of CPU a record, a third of what the whole ingest stage costs.
librdkafka fetches and decodes in C threads; ``consume`` hands over ready records (about 3 us a
record in the same loop, ``bench/ingest_wide.py``). Everything the stages see is the same as with
``source.KafkaSource``: the same batches, commits, rebalance hooks on the polling thread, lag and
health (``tests/integration/kafka/test_source.py`` runs its checks on both).

Where the clients differ, and how this source hides it:

- Rebalance callbacks run inside ``consume`` on the caller's thread, so the hooks run there
  directly. A ``seek`` from an assignment hook cannot be done before the assignment exists: it
  is remembered and becomes the partition's start offset in the assignment itself.
- The consumer is created without a broker (it connects in the background), so a broker that
  is not up yet is not an error here; ``error_cb`` reports "all brokers down", and the
  client's statistics (every ``STATS_INTERVAL_MS``) say whether a broker connection is up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import confluent_kafka

from agent import settings
from agent.ingest import connection, source
from agent.ingest.source import Partition, RawMessage
from agent.observability import errors

log = logging.getLogger(__name__)

# How often librdkafka reports its brokers' states (the connected gauge and /readyz follow them).
STATS_INTERVAL_MS: Final = 1000
FETCH_QUEUE_BACKOFF_MS: Final = 10
# kafka-python's keyword arguments (``connection.connection_config``) as librdkafka properties.
_PROPERTIES: Final = {
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}
_DOWN_CODES: Final = frozenset(
    {confluent_kafka.KafkaError._ALL_BROKERS_DOWN, confluent_kafka.KafkaError._TRANSPORT}
)


def client_properties(connection: dict[str, Any]) -> dict[str, Any]:
    """``connection.connection_config``'s settings (servers, TLS, SASL) as librdkafka properties."""
    properties: dict[str, Any] = {"bootstrap.servers": ",".join(connection["bootstrap_servers"])}
    for name, value in connection.items():
        if name != "bootstrap_servers":
            properties[_PROPERTIES[name]] = value
    return properties


class RdKafkaSource(source.GroupSource):
    """``source.Source`` on librdkafka (confluent-kafka)."""

    def __init__(self, kafka_settings: settings.KafkaSettings, **options: Any) -> None:
        super().__init__(kafka_settings, **options)
        self._consumer: confluent_kafka.Consumer | None = None
        self._member = False
        # Kept from the rebalance callbacks: asking the client (``Consumer.assignment``) waits on its
        # group thread, which waits for this thread to serve a pending rebalance: a deadlock.
        self._assigned: list[Partition] = []
        # Seeks asked for by the assignment hooks under way: partition -> start offset.
        self._assigning: dict[Partition, int] | None = None

    # -- public surface ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected to a broker and a member of the consumer group with its assignment."""
        return self._consumer is not None and self._connected and self._member

    def assignment(self) -> list[Partition]:
        return list(self._assigned) if self._consumer is not None else []

    def committed(self, partition: Partition) -> int | None:
        """The group's committed offset of ``partition`` (None: nothing committed yet)."""
        consumer = self._consumer
        if consumer is None:
            return None
        found = consumer.committed([_topic_partition(partition)], timeout=self.commit_timeout_s)
        offset = found[0].offset if found else confluent_kafka.OFFSET_INVALID
        return int(offset) if offset >= 0 else None

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` again from ``offset``. From an assignment hook: the assignment starts
        there; between polls: the same as ``rewind``."""
        if self._assigning is not None:
            self._assigning[partition] = offset
            self._next_offset.pop(partition, None)
            return
        self.rewind(partition, offset)

    def rewind(self, partition: Partition, offset: int) -> None:
        """Between polls: the next polls read ``partition`` again from ``offset`` (the client
        discards what it had fetched beyond it)."""
        consumer = self._consumer
        if consumer is None:
            return
        consumer.seek(_topic_partition(partition, offset))
        self._next_offset.pop(partition, None)

    def pause(self, partitions: Sequence[Partition]) -> None:
        """Stop fetching these partitions (until ``resume``); their records wait in Kafka."""
        consumer = self._consumer
        if consumer is not None and partitions:
            consumer.pause([_topic_partition(p) for p in partitions])

    def resume(self, partitions: Sequence[Partition]) -> None:
        consumer = self._consumer
        if consumer is not None and partitions:
            consumer.resume([_topic_partition(p) for p in partitions])

    def poll_batch(self) -> list[RawMessage]:
        """Up to ``max_poll_records`` records; ``[]`` when none arrived or the broker is away."""
        if self._closed:
            return []
        consumer = self._ensure_consumer()
        if consumer is None:
            return []
        try:
            polled = consumer.consume(
                num_messages=self.settings.max_poll_records, timeout=self.settings.poll_timeout_ms / 1000
            )
        except (confluent_kafka.KafkaException, RuntimeError) as exc:
            self._failed("reading from kafka failed", exc)
            return []
        batch = self._to_messages(polled)
        if batch:
            self._set_connected(True)
            self._last_error = None
        self._refresh_lag(lambda: self._highwaters(consumer))
        return batch

    @property
    def _created(self) -> bool:
        return self._consumer is not None

    def _not_created(self) -> str:
        return f"kafka consumer not created ({self._last_error or 'starting'})"

    def _owned(self) -> list[Partition]:
        return self._assigned

    def _send_commit(self, offsets: Mapping[Partition, int]) -> BaseException | None:
        consumer = self._consumer
        assert consumer is not None
        try:
            consumer.commit(
                offsets=[_topic_partition(p, offset) for p, offset in offsets.items()], asynchronous=False
            )
        except confluent_kafka.KafkaException as exc:
            return exc
        return None

    def close(self) -> None:
        """Leave the group (partitions move to the other members at once)."""
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except (confluent_kafka.KafkaException, RuntimeError) as exc:
                log.warning("closing the kafka consumer: %s", errors.describe(exc))
        self._member = False
        self._assigned = []
        self._set_connected(False)

    # -- internals --------------------------------------------------------------------------

    def _ensure_consumer(self) -> confluent_kafka.Consumer | None:
        if self._consumer is not None:
            return self._consumer
        properties = {
            **client_properties(self._connection),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.settings.auto_offset_reset,
            "max.poll.interval.ms": self.settings.max_poll_interval_ms,
            "session.timeout.ms": self.settings.session_timeout_ms,
            "heartbeat.interval.ms": max(100, self.settings.session_timeout_ms // 3),
            "fetch.max.bytes": source.FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": max(
                source.MAX_PARTITION_FETCH_BYTES, self.settings.max_message_bytes
            ),
            "receive.message.max.bytes": source.FETCH_MAX_BYTES + 2**20,
            # What librdkafka prefetches ahead of ``consume`` (64 MiB by default): one fetch's worth,
            # as kafka-python holds, so the chart's memory limit fits either client.
            "queued.max.messages.kbytes": source.FETCH_MAX_BYTES // 1024,
            # How long fetching pauses once that much waits (1 s by default): with the default the
            # loop ran dry for most of each second. The agent's ingest stage at 200 features
            # (``bench.ingest_wide``): 5 600 records/s with 1 s, 26 800 with 10 ms.
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._stats,
            "error_cb": self._error,
            "logger": log,
        }
        try:
            consumer = confluent_kafka.Consumer(properties)
            consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
        except (confluent_kafka.KafkaException, ValueError) as exc:
            # Only a bad configuration fails here (the client connects in the background).
            self._last_error = errors.describe(exc)
            raise connection.SourceConfigError(
                f"kafka client configuration refused: {self._last_error}"
            ) from exc
        self._consumer = consumer
        return consumer

    def _to_messages(self, polled: list[confluent_kafka.Message]) -> list[RawMessage]:
        batch: list[RawMessage] = []
        append = batch.append
        # Per partition, the last offset and the count: kept per batch, not per record (at 200
        # features every call a record costs is paid 20 000 times a second).
        last: dict[tuple[str, int], list[int]] = {}
        for message in polled:
            error = message.error()
            if error is not None:
                self._client_error(error)
                continue
            # A message without an error always has its coordinates.
            topic: str = message.topic()  # type: ignore[assignment]
            partition: int = message.partition()  # type: ignore[assignment]
            offset: int = message.offset()  # type: ignore[assignment]
            # A null value (tombstone) is still a record: the parser rejects it to the DLQ.
            value = message.value()
            headers = message.headers()
            append(
                RawMessage(
                    topic,
                    partition,
                    offset,
                    value if value is not None else b"",
                    message.timestamp()[1],
                    message.key(),
                    _headers(headers) if headers else (),
                )
            )
            seen = last.get((topic, partition))
            if seen is None:
                last[topic, partition] = [offset, 1]
            else:
                seen[0] = offset
                seen[1] += 1
        counts: dict[str, int] = {}
        for (topic, partition), (offset, count) in last.items():
            self._next_offset[Partition(topic, partition)] = offset + 1
            counts[topic] = counts.get(topic, 0) + count
        if self.metrics is not None:
            for topic, count in counts.items():
                self.metrics.record_in(topic, count)
        return batch

    def _highwaters(self, consumer: confluent_kafka.Consumer) -> list[tuple[Partition, int | None]]:
        found: list[tuple[Partition, int | None]] = []
        for partition in self._assigned:
            # From the last fetch response (cached): no request to the broker.
            _, high = consumer.get_watermark_offsets(_topic_partition(partition), cached=True)
            found.append((partition, high if high >= 0 else None))
        return found

    def _on_assign(
        self, consumer: confluent_kafka.Consumer, assigned: list[confluent_kafka.TopicPartition]
    ) -> None:
        partitions = sorted(_partitions(assigned), key=_order)
        self._assigned = partitions
        self._member = True
        self._set_connected(True)
        self._assigning = {}
        try:
            if partitions:  # a member's first join may bring nothing
                self._partitions_assigned(partitions)
            starts = self._assigning
        finally:
            self._assigning = None
        consumer.assign(
            [
                _topic_partition(p, starts.get(p, confluent_kafka.OFFSET_INVALID))
                for p in _partitions(assigned)
            ]
        )

    def _on_revoke(
        self, consumer: confluent_kafka.Consumer, revoked: list[confluent_kafka.TopicPartition]
    ) -> None:
        self._member = False
        partitions = sorted(_partitions(revoked), key=_order)
        self._assigned = [p for p in self._assigned if p not in set(partitions)]
        if partitions:
            self._partitions_revoked(partitions)

    def _error(self, error: confluent_kafka.KafkaError) -> None:
        self._client_error(error)

    def _client_error(self, error: confluent_kafka.KafkaError) -> None:
        text = error.str()
        if error.code() in _DOWN_CODES:
            self._set_connected(False)
        if text != self._last_error:  # the client repeats an error at each retry: logged once
            log.warning("kafka client: %s", text)
        self._last_error = text

    def _stats(self, report: str) -> None:
        try:
            brokers = json.loads(report).get("brokers", {})
            up = any(broker.get("state") == "UP" for broker in brokers.values())
        except (ValueError, AttributeError):
            return  # statistics are best effort; an odd report must not stop ingest
        self._set_connected(up)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._last_error = errors.describe(exc)
        self._set_connected(False)
        log.warning(
            "%s (%s); the consumer keeps retrying. Check the broker if this repeats", what, self._last_error
        )


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Record headers as kafka-python gives them: (name, bytes) pairs (a null value: empty)."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple(
        (name, data.encode("utf-8") if isinstance(data, str) else (data if data is not None else b""))
        for name, data in pairs
    )


def _topic_partition(partition: Partition, offset: int | None = None) -> confluent_kafka.TopicPartition:
    if offset is None:
        return confluent_kafka.TopicPartition(partition.topic, partition.partition)
    return confluent_kafka.TopicPartition(partition.topic, partition.partition, offset)


def _partitions(found: list[confluent_kafka.TopicPartition]) -> list[Partition]:
    return [Partition(tp.topic, tp.partition) for tp in found]


def _order(partition: Partition) -> tuple[str, int]:
    return (partition.topic, partition.partition)

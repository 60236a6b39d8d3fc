"""Kafka side of ingest: a consumer-group source with at-least-once commits.

The pipeline polls a batch, processes it, makes the results durable, then calls ``commit``
with that batch: only those offsets move. A broker outage is not an error here: the source
reports ``ready = False``, returns empty batches and reconnects with exponential backoff.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import kafka
from kafka import errors as kafka_errors

from agent import settings
from agent.ingest.connection import connection_config
from agent.observability import collectors, errors
from agent.observability import metrics as metrics_mod

log = logging.getLogger(__name__)

Clock = Callable[[], float]
PartitionsHook = Callable[[list["Partition"]], None]

# Bigger fetches amortise the per-request cost of a pure-Python client: 4 MiB per partition is
# ~6k records of 660 bytes (three polls of 2000 per round trip); 16 MiB in all bounds what a
# sidecar buffers. (bench/ingest.py could not separate 1-16 MiB on the shared 2-core machine:
# run-to-run noise was about 2x.)
FETCH_MAX_BYTES = 16 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
LAG_REFRESH_S = 5.0
# kafka-python blocks its constructor until it reaches a broker; the loop must not stall for
# the client's 30 s default (a SIGTERM drain would overrun), so give up early and back off.
BOOTSTRAP_TIMEOUT_S = 3.0
COMMIT_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Partition:
    topic: str
    partition: int


class RawMessage(NamedTuple):
    """One Kafka record as the pipeline sees it: bytes, not yet parsed.

    A named tuple, not a frozen dataclass: one is built per record at ingest rate, and a
    frozen dataclass costs about three times as much to construct.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int
    key: bytes | None = None
    # Kafka record headers, as the client gives them: CloudEvents in binary mode live here.
    headers: tuple[tuple[str, bytes], ...] = ()


def input_topics(kafka_settings: settings.KafkaSettings) -> list[str]:
    topics = [kafka_settings.predictions_topic]
    if kafka_settings.labels_topic:
        topics.append(kafka_settings.labels_topic)
    return topics


class Backoff:
    """Exponential backoff on an injected clock: initial, doubled per failure, capped."""

    def __init__(self, initial_s: float, max_s: float, clock: Clock) -> None:
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.clock = clock
        self.failures = 0
        self.next_attempt_at = 0.0

    def ready(self) -> bool:
        return self.clock() >= self.next_attempt_at

    def failed(self) -> float:
        delay = min(self.max_s, self.initial_s * (2.0**self.failures))
        self.failures += 1
        self.next_attempt_at = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_attempt_at = 0.0


def producer_with_backoff(
    connection: dict[str, Any], backoff: Backoff, what: str, **options: Any
) -> kafka.KafkaProducer | None:
    """A new producer; None while ``backoff`` says wait, or when no broker answers (logged, backed off)."""
    if not backoff.ready():
        return None
    try:
        producer = kafka.KafkaProducer(**connection, **options)
    except kafka_errors.KafkaError as exc:
        delay = backoff.failed()
        log.warning(
            "cannot create the %s producer (%s); next try in %.1fs", what, errors.describe(exc), delay
        )
        return None
    backoff.succeeded()
    return producer


class _RebalanceListener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
    """Queues rebalance events for the pipeline's thread.

    kafka-python 3 calls listeners on its I/O thread, where a blocking call (commit) raises;
    so events are handed over and delivered by the next ``poll_batch`` on the caller's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, list[Partition]]] = []

    def on_partitions_revoked(self, revoked: Iterable[kafka.TopicPartition]) -> None:
        self._queue("revoked", revoked)

    def on_partitions_assigned(self, assigned: Iterable[kafka.TopicPartition]) -> None:
        self._queue("assigned", assigned)

    def _queue(self, kind: str, partitions: Iterable[kafka.TopicPartition]) -> None:
        moved = sorted((Partition(tp.topic, tp.partition) for tp in partitions), key=_partition_order)
        if moved:  # a member's first join revokes nothing
            with self._lock:
                self._events.append((kind, moved))

    def take(self) -> list[tuple[str, list[Partition]]]:
        with self._lock:
            events, self._events = self._events, []
        return events


class Source(Protocol):
    """What the stages need from the consumer-group source, whichever client reads Kafka."""

    settings: settings.KafkaSettings
    group_id: str
    topics: list[str]

    @property
    def ready(self) -> bool: ...

    def status(self) -> str: ...

    def assignment(self) -> list[Partition]: ...

    def committed(self, partition: Partition) -> int | None: ...

    def seek(self, partition: Partition, offset: int) -> None: ...

    def rewind(self, partition: Partition, offset: int) -> None: ...

    def pause(self, partitions: Sequence[Partition]) -> None: ...

    def resume(self, partitions: Sequence[Partition]) -> None: ...

    def poll_batch(self) -> list[RawMessage]: ...

    def commit(self, batch: Sequence[RawMessage]) -> bool: ...

    def close(self) -> None: ...


class GroupSource:
    """What the sources share, whichever client they drive: settings, hooks, commits, lag, health.

    ``on_revoked`` / ``on_assigned`` run on the caller's thread, inside the ``poll_batch`` that
    follows (kafka-python) or runs (librdkafka) a rebalance. Revoked partitions may already belong
    to another member: ``commit`` leaves them out (the new owner re-reads from the last commit: at
    least once), and the pipeline drops whatever per-partition state it keeps.
    """

    def __init__(
        self,
        kafka_settings: settings.KafkaSettings,
        *,
        metrics: metrics_mod.AgentMetrics | None = None,
        clock: Clock = time.monotonic,
        on_revoked: PartitionsHook | None = None,
        on_assigned: PartitionsHook | None = None,
        lag_refresh_s: float = LAG_REFRESH_S,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        export_gauges: bool = True,
    ) -> None:
        self.settings = kafka_settings
        self.metrics = metrics
        self.clock = clock
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned
        self.lag_refresh_s = lag_refresh_s
        self.commit_timeout_s = commit_timeout_s
        # The input topics by default; the evaluate and act stages read the internal ones.
        self.topics = list(topics) if topics is not None else input_topics(kafka_settings)
        self.group_id = group_id if group_id is not None else kafka_settings.group_id
        # Validate now: a bad TLS path or missing password file is a config error, not an outage.
        self._connection = connection_config(kafka_settings)
        self._connected = False
        self._last_error: str | None = None
        self._next_offset: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}
        self._lag_refreshed_at: float | None = None
        # Replaced as a whole (copy on write): the /metrics thread reads it while the loop runs.
        self._lag: Mapping[Partition, int] = {}
        self._closed = False
        if metrics is not None and export_gauges:
            collectors.register_gauge(metrics.registry, collectors.CONSUMER_LAG, self._lag_samples)
            collectors.register_gauge(
                metrics.registry, collectors.KAFKA_CONNECTED, collectors.flag(lambda: self._connected)
            )

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    def status(self) -> str:
        """One line for ``/readyz``: why the source is not ready (or ``ok``)."""
        if self._closed:
            return "kafka source closed"
        if not self._created:
            return self._not_created()
        if not self._connected:
            reason = f" ({self._last_error})" if self._last_error else ""
            return f"no connection to kafka brokers {self.settings.bootstrap_servers}{reason}; reconnecting"
        if not self.ready:
            return f"joining consumer group {self.group_id!r}"
        return "ok"

    def commit(self, batch: Sequence[RawMessage]) -> bool:
        """Commit offset+1 of the last record per partition in ``batch``; False when it failed.

        A failure is not fatal: the records come back after a restart or rebalance (at least
        once). Offsets never move backwards through this method, and partitions that moved to
        another member are left out (that is not a failure).
        """
        if not self._created or not batch:
            return not batch
        offsets = self._offsets_to_commit(batch, self._owned())
        if not offsets:
            return True
        failure = self._send_commit(offsets)
        if failure is not None:
            log.warning(
                "offset commit failed (%s); the records since the last commit are read again, nothing "
                "is lost. A rebalance causes this once; check the broker if it repeats",
                errors.describe(failure),
            )
            self._count_commit(False)
            return False
        self._committed.update(offsets)
        self._count_commit(True)
        return True

    # -- what each client provides ----------------------------------------------------------

    @property
    def _created(self) -> bool:
        raise NotImplementedError

    def _not_created(self) -> str:
        raise NotImplementedError

    def _owned(self) -> Iterable[Partition]:
        raise NotImplementedError

    def _send_commit(self, offsets: Mapping[Partition, int]) -> BaseException | None:
        """Commit ``offsets`` synchronously; the error, or None once the broker took them."""
        raise NotImplementedError

    # -- shared internals -------------------------------------------------------------------

    def _offsets_to_commit(
        self, batch: Sequence[RawMessage], owned: Iterable[Partition]
    ) -> dict[Partition, int]:
        """offset + 1 of the last record per partition of ``batch`` that this member still owns,
        where that moves the commit on (offsets never move backwards)."""
        highest: dict[Partition, int] = {}
        for message in batch:
            key = Partition(message.topic, message.partition)
            if message.offset + 1 > highest.get(key, -1):
                highest[key] = message.offset + 1
        owned = set(owned)
        moved = sorted(f"{p.topic}[{p.partition}]" for p in highest if p not in owned)
        if moved:
            # The broker would accept them (it checks the generation, not ownership) and could
            # move the new owner's offsets: leave those partitions to it.
            log.info("not committing partitions now owned by another member: %s", ", ".join(moved))
        return {
            p: offset for p, offset in highest.items() if p in owned and offset > self._committed.get(p, -1)
        }

    def _refresh_lag(self, highwaters: Callable[[], Iterable[tuple[Partition, int | None]]]) -> None:
        """Every ``lag_refresh_s``: each owned partition's lag from its high watermark."""
        if self.metrics is None:
            return
        now = self.clock()
        if self._lag_refreshed_at is not None and now - self._lag_refreshed_at < self.lag_refresh_s:
            return
        self._lag_refreshed_at = now
        lag = dict(self._lag)
        for partition, highwater in highwaters():
            # From the last commit, not the fetch position: records read but never committed (a
            # stage that cannot make them durable) are still behind.
            position = self._committed.get(partition, self._next_offset.get(partition))
            if highwater is None or position is None:
                continue
            lag[partition] = max(0, highwater - position)
        self._lag = lag

    def _lag_samples(self) -> list[collectors.Sample]:
        return [((p.topic, str(p.partition)), float(n)) for p, n in self._lag.items()]

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            log.info("kafka %s", "connected" if connected else "disconnected")
        self._connected = connected

    def _count_commit(self, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.commit_result(ok)

    def _partitions_revoked(self, partitions: list[Partition]) -> None:
        log.info("partitions revoked: %s", _describe(partitions))
        _run_hook(self.on_revoked, partitions, "on_revoked")
        for partition in partitions:
            self._next_offset.pop(partition, None)
            self._committed.pop(partition, None)
        # Their lag is the new owner's to report now.
        self._lag = {p: n for p, n in self._lag.items() if p not in set(partitions)}

    def _partitions_assigned(self, partitions: list[Partition]) -> None:
        log.info("partitions assigned: %s", _describe(partitions))
        _run_hook(self.on_assigned, partitions, "on_assigned")


def _run_hook(hook: PartitionsHook | None, partitions: list[Partition], name: str) -> None:
    """A stage's rebalance hook: one that raises is logged and the rebalance goes on."""
    if hook is None:
        return
    try:
        hook(partitions)
    except Exception:
        log.exception("%s hook failed", name)


class KafkaSource(GroupSource):
    """The consumer-group source on kafka-python (a pure-Python client)."""

    def __init__(
        self,
        kafka_settings: settings.KafkaSettings,
        *,
        bootstrap_timeout_s: float = BOOTSTRAP_TIMEOUT_S,
        **options: Any,
    ) -> None:
        super().__init__(kafka_settings, **options)
        self.bootstrap_timeout_s = bootstrap_timeout_s
        self._backoff = Backoff(
            kafka_settings.reconnect_backoff_initial_s, kafka_settings.reconnect_backoff_max_s, self.clock
        )
        self._consumer: kafka.KafkaConsumer | None = None
        self._listener = _RebalanceListener()
        # Partitions sought during the rebalance hooks of the poll in hand (its records are stale).
        self._reset: set[Partition] = set()

    # -- public surface ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected to a broker and a stable member of the consumer group."""
        consumer = self._consumer
        if consumer is None or not self._connected:
            return False
        return bool(consumer.group_metadata().state == kafka.structs.MemberState.STABLE)

    def assignment(self) -> list[Partition]:
        consumer = self._consumer
        if consumer is None:
            return []
        return sorted(
            (Partition(tp.topic, tp.partition) for tp in consumer.assignment()), key=_partition_order
        )

    def committed(self, partition: Partition) -> int | None:
        """The group's committed offset of ``partition`` (None: nothing committed yet)."""
        consumer = self._consumer
        if consumer is None:
            return None
        found = consumer.committed(kafka.TopicPartition(partition.topic, partition.partition))
        return int(found) if found is not None else None

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` again from ``offset``. Call from an assignment hook: what the poll
        in hand fetched from that partition is dropped, the next polls start at ``offset``."""
        consumer = self._consumer
        if consumer is None:
            return
        consumer.seek(kafka.TopicPartition(partition.topic, partition.partition), offset)
        self._next_offset.pop(partition, None)
        self._reset.add(partition)

    def rewind(self, partition: Partition, offset: int) -> None:
        """Between polls (not from an assignment hook): the next polls read ``partition`` again
        from ``offset`` (the client discards what it had fetched beyond it)."""
        consumer = self._consumer
        if consumer is None:
            return
        consumer.seek(kafka.TopicPartition(partition.topic, partition.partition), offset)
        self._next_offset.pop(partition, None)

    def pause(self, partitions: Sequence[Partition]) -> None:
        """Stop fetching these partitions (until ``resume``); their records wait in Kafka."""
        consumer = self._consumer
        if consumer is not None and partitions:
            consumer.pause(*(kafka.TopicPartition(p.topic, p.partition) for p in partitions))

    def resume(self, partitions: Sequence[Partition]) -> None:
        consumer = self._consumer
        if consumer is not None and partitions:
            consumer.resume(*(kafka.TopicPartition(p.topic, p.partition) for p in partitions))

    def poll_batch(self) -> list[RawMessage]:
        """Up to ``max_poll_records`` records; ``[]`` when none arrived or the broker is away."""
        if self._closed:
            return []
        consumer = self._ensure_consumer()
        if consumer is None:
            return []
        try:
            polled = consumer.poll(
                timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_poll_records
            )
        except kafka_errors.KafkaError as exc:
            self._poll_failed(exc)
            return []
        finally:
            self._deliver_rebalance_events()
        batch = self._to_messages(polled)
        self._refresh_health(consumer, got_records=bool(batch))
        return batch

    @property
    def _created(self) -> bool:
        return self._consumer is not None

    def _not_created(self) -> str:
        wait = max(0.0, self._backoff.next_attempt_at - self.clock())
        return f"kafka consumer not created ({self._last_error or 'starting'}); next attempt in {wait:.1f}s"

    def _owned(self) -> Iterable[Partition]:
        consumer = self._consumer
        assert consumer is not None
        return (Partition(tp.topic, tp.partition) for tp in consumer.assignment())

    def _send_commit(self, offsets: Mapping[Partition, int]) -> BaseException | None:
        consumer = self._consumer
        assert consumer is not None
        try:
            consumer.commit(
                offsets={
                    kafka.TopicPartition(p.topic, p.partition): kafka.OffsetAndMetadata(offset, "", -1)
                    for p, offset in offsets.items()
                },
                timeout_ms=int(self.commit_timeout_s * 1000),
            )
        except kafka_errors.KafkaError as exc:
            failure: BaseException = exc
            return failure
        return None

    def close(self) -> None:
        """Leave the group (partitions move to the other members at once)."""
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=int(self.commit_timeout_s * 1000))
            except kafka_errors.KafkaError as exc:
                log.warning("closing the kafka consumer: %s", exc)
            self._deliver_rebalance_events()
        self._set_connected(False)

    # -- internals --------------------------------------------------------------------------

    def _ensure_consumer(self) -> kafka.KafkaConsumer | None:
        if self._consumer is not None:
            return self._consumer
        if not self._backoff.ready():
            return None
        try:
            consumer = kafka.KafkaConsumer(
                **self._connection,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset=self.settings.auto_offset_reset,
                max_poll_records=self.settings.max_poll_records,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
                session_timeout_ms=self.settings.session_timeout_ms,
                heartbeat_interval_ms=max(100, self.settings.session_timeout_ms // 3),
                fetch_max_bytes=FETCH_MAX_BYTES,
                max_partition_fetch_bytes=max(MAX_PARTITION_FETCH_BYTES, self.settings.max_message_bytes),
                bootstrap_timeout_ms=int(self.bootstrap_timeout_s * 1000),
            )
            consumer.subscribe(self.topics, listener=self._listener)
        except kafka_errors.KafkaError as exc:
            delay = self._backoff.failed()
            self._last_error = errors.describe(exc)
            log.warning(
                "cannot connect to kafka (%s); retrying in %.1fs. Check kafka.bootstrap_servers and "
                "that the broker is up",
                self._last_error,
                delay,
            )
            return None
        self._backoff.succeeded()
        self._last_error = None
        self._consumer = consumer
        return consumer

    def _poll_failed(self, exc: kafka_errors.KafkaError) -> None:
        self._last_error = errors.describe(exc)
        self._set_connected(False)
        log.warning(
            "reading from kafka failed (%s); the consumer keeps retrying. Check the broker if this repeats",
            self._last_error,
        )

    def _to_messages(self, polled: dict[kafka.TopicPartition, list[Any]]) -> list[RawMessage]:
        batch: list[RawMessage] = []
        reset, self._reset = self._reset, set()
        for tp, records in polled.items():
            if not records or Partition(tp.topic, tp.partition) in reset:
                continue  # fetched before a seek: read again from where the seek points
            for record in records:
                # A null value (tombstone) is still a record: the parser rejects it to the DLQ.
                value = record.value if record.value is not None else b""
                batch.append(
                    RawMessage(
                        tp.topic,
                        tp.partition,
                        record.offset,
                        value,
                        record.timestamp,
                        record.key,
                        tuple(record.headers or ()),
                    )
                )
            self._next_offset[Partition(tp.topic, tp.partition)] = records[-1].offset + 1
            if self.metrics is not None:
                self.metrics.record_in(tp.topic, len(records))
        return batch

    def _refresh_health(self, consumer: kafka.KafkaConsumer, *, got_records: bool) -> None:
        connected = got_records or _connection_count(consumer) > 0
        self._set_connected(connected)
        if connected:
            self._last_error = None
        # The high watermark comes with every fetch response: no extra request. (Tansu's
        # ListOffsets answers wrong ends for multi-record batches; fetch responses are right.)
        self._refresh_lag(
            lambda: (
                (Partition(tp.topic, tp.partition), consumer.highwater(tp)) for tp in consumer.assignment()
            )
        )

    def _deliver_rebalance_events(self) -> None:
        for kind, partitions in self._listener.take():
            if kind == "revoked":
                self._partitions_revoked(partitions)
            else:
                self._partitions_assigned(partitions)


def _connection_count(consumer: kafka.KafkaConsumer) -> float:
    """Open broker connections, from the client's own metrics (public API, no private state)."""
    try:
        value = consumer.metrics().get("consumer-metrics", {}).get("connection-count", 0.0)
    except Exception:  # metrics are best effort; an odd value must not stop ingest
        return 0.0
    return float(value) if value else 0.0


def _partition_order(partition: Partition) -> tuple[str, int]:
    return (partition.topic, partition.partition)


def _describe(partitions: list[Partition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "(none)"

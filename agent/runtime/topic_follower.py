"""A thread that follows one partition of a topic and hands each message on.

Used for what the Lease holder needs from the evaluators (closed windows for the canary,
labelled rows for a retrain): best-effort feeds, read without a consumer group. It starts at
the end of the partition, ``backfill`` messages before it; with ``active`` it reads only while
that holds (the Lease), and starts afresh (``on_restart``, then from the backfill) each time it
becomes true again. A broker outage is retried; a message the handler fails on is logged and
skipped, never the end of the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import kafka
from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.ingest import connection, source
from agent.observability import errors

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
POLL_TIMEOUT_MS = 500
IDLE_CHECK_S = 1.0


class TopicFollower:
    def __init__(
        self,
        kafka_settings: settings_mod.KafkaSettings,
        topic: str,
        on_message: Callable[[bytes, bytes], None],
        *,
        name: str,
        backfill: int = 0,
        active: Callable[[], bool] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._settings = kafka_settings
        self._topic = topic
        self._on_message = on_message
        self._backfill = backfill
        self._active = active if active is not None else (lambda: True)
        self._on_restart = on_restart
        self._stopping = threading.Event()
        # Set once the follower knows where it reads from (the end, or the backfill before it).
        self.positioned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.handled = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._active():
                self._stopping.wait(IDLE_CHECK_S)
                continue
            if self._on_restart is not None:
                self._on_restart()
            consumer: kafka.KafkaConsumer | None = None
            try:
                consumer = self._open()
                self.positioned.set()
                while not self._stopping.is_set() and self._active():
                    for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                        for record in records:
                            self._hand_on(record.key, record.value)
            except kafka_errors.KafkaError as exc:
                log.warning(
                    "lost topic %s (%s); reconnecting in %.0fs. Check the broker if this repeats",
                    self._topic,
                    errors.describe(exc),
                    RECONNECT_S,
                )
                self._stopping.wait(RECONNECT_S)
            finally:
                self.positioned.clear()
                if consumer is not None:
                    consumer.close()

    def _open(self) -> kafka.KafkaConsumer:
        consumer = kafka.KafkaConsumer(
            **connection.connection_config(self._settings),
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=max(source.MAX_PARTITION_FETCH_BYTES, self._settings.max_message_bytes),
        )
        partition = kafka.TopicPartition(self._topic, 0)
        consumer.assign([partition])
        if self._backfill:
            first = consumer.beginning_offsets([partition])[partition]
            end = consumer.end_offsets([partition])[partition]
            consumer.seek(partition, max(first, end - self._backfill))
        else:
            consumer.seek_to_end(partition)
            consumer.position(partition)  # resolve "the end" now, not at the first fetch
        return consumer

    def _hand_on(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            self._on_message(key, value)
        except Exception:  # one bad message must not end the follower
            log.exception("following %s: a message could not be handled; skipped", self._topic)
            return
        self.handled += 1

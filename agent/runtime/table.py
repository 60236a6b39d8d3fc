"""A compacted Kafka topic used as a key-value table: the agents' shared, durable state.

``read(partitions)`` reads the given partitions from their beginning to their current end and
returns every live value per key, in log order (the caller picks; usually the last one wins).
``put`` appends a value, ``delete`` a tombstone; ``flush`` waits until the broker has them
(acks=all). The local state directory is only ever a cache: a pod that restarts on an empty
disk reads its state back from here.

The end of a partition is taken from the fetch responses' high watermark, not from ListOffsets
(the embedded broker answers ListOffsets wrongly for multi-record batches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

import kafka
from kafka.producer.future import FutureRecordMetadata

from agent import settings as settings_mod
from agent.ingest import connection, source

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0


class TableError(RuntimeError):
    """The table could not be read to its end in time."""


class CompactedTable:
    def __init__(
        self,
        kafka_settings: settings_mod.KafkaSettings,
        topic: str,
        producer: kafka.KafkaProducer,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.topic = topic
        self._settings = kafka_settings
        self._producer = producer
        self._read_timeout_s = read_timeout_s

    def read(self, partitions: Iterable[int]) -> dict[bytes, list[bytes]]:
        """Every value per key in ``partitions`` (oldest first); a key whose last write is a
        tombstone is left out."""
        wanted = [kafka.TopicPartition(self.topic, p) for p in sorted(set(partitions))]
        values: dict[bytes, list[bytes]] = {}
        if not wanted:
            return values
        consumer = kafka.KafkaConsumer(
            **connection.connection_config(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(source.MAX_PARTITION_FETCH_BYTES, self._settings.max_message_bytes),
        )
        try:
            consumer.assign(wanted)
            consumer.seek_to_beginning(*wanted)
            deadline = time.monotonic() + self._read_timeout_s
            while not _at_end(consumer, wanted):
                if time.monotonic() > deadline:
                    raise TableError(
                        f"reading {self.topic} partitions {[tp.partition for tp in wanted]} timed out"
                    )
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        if record.key is None:
                            continue
                        if record.value is None:
                            values.pop(record.key, None)
                        else:
                            values.setdefault(record.key, []).append(record.value)
        finally:
            consumer.close()
        return values

    def put(self, key: bytes, value: bytes, partition: int) -> FutureRecordMetadata:
        return self._producer.send(self.topic, key=key, value=value, partition=partition)

    def delete(self, key: bytes, partition: int) -> None:
        self._producer.send(self.topic, key=key, value=None, partition=partition)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout=timeout_s)


def _at_end(consumer: kafka.KafkaConsumer, partitions: Iterable[kafka.TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or consumer.position(tp) < highwater:
            return False
    return True


def latest(values: Mapping[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """Last-writer-wins view of ``read``'s result."""
    return {key: versions[-1] for key, versions in values.items() if versions}

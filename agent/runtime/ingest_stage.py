"""Stage 1, on every agent: its share of the input partitions in, window fragments out.

The agent's one consumer (see ``runtime.sidecar``) hands this stage the records of the
prediction and label topics it was assigned; the stage parses and joins them
(``IngestWorker``), sends bad records to the dead-letter topic, and publishes the fragments
keyed by model to ``<prefix>.fragments``. Every ``streams.commit_interval_s`` it makes that
durable in order: fragments produced and acknowledged (acks=all), dead letters flushed, then
the input offsets committed. A crash in between re-ingests what came after the last commit;
the evaluator drops what it already counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.ingest import dead_letters, fragments, producers, source, worker
from agent.observability import errors
from agent.observability import metrics as metrics_mod
from agent.runtime import acks

log = logging.getLogger(__name__)


class IngestStage:
    def __init__(
        self,
        *,
        kafka_settings: settings_mod.KafkaSettings,
        streams: settings_mod.StreamsSettings,
        fragments_topic: str,
        fragment_partitions: int,
        ingest: worker.IngestWorker,
        producer: producers.FragmentProducer,
        metrics: metrics_mod.AgentMetrics,
        clock: Callable[[], float] = time.monotonic,
        dead_letter_bytes: int = dead_letters.DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.topics = frozenset(source.input_topics(kafka_settings))
        self._topic = fragments_topic
        self._partitions = fragment_partitions
        self._worker = ingest
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._interval_s = streams.commit_interval_s
        # Raw input bytes since the last checkpoint, and how many make one due early: at 27 000
        # records/s (200 features, librdkafka) a 1 s interval held ~200 MB of parsed records.
        self._held_bytes = 0
        self._max_held_bytes = int(streams.checkpoint_input_mib * 2**20)
        self.dlq = dead_letters.DeadLetterQueue(
            kafka_settings,
            metrics=metrics,
            max_wait_s=kafka_settings.dead_letter_max_wait_s,
            max_pending_bytes=dead_letter_bytes,
        )
        # The last message per partition since the last commit: all a commit needs; and the first,
        # where a checkpoint that failed reads the partition again from.
        self._uncommitted: dict[tuple[str, int], source.RawMessage] = {}
        self._first_uncommitted: dict[tuple[str, int], int] = {}
        self._sends = acks.PendingSends()
        self._last_durable = clock()
        self.records = 0
        self.fragments_sent = 0
        self._predictions_counted = 0

    @property
    def worker_counts(self) -> worker.IngestCounts:
        return self._worker.counts

    def handle(self, message: source.RawMessage) -> None:
        for rejected in self._worker.add(message):
            self.dlq.send(rejected, message)
        where = (message.topic, message.partition)
        self._uncommitted[where] = message
        self._first_uncommitted.setdefault(where, message.offset)
        self._held_bytes += len(message.value)
        self.records += 1

    def due(self) -> bool:
        """``commit_interval_s`` since the last checkpoint, or ``checkpoint_input_mib`` read since."""
        return (
            self._held_bytes >= self._max_held_bytes or self._clock() - self._last_durable >= self._interval_s
        )

    def publish(self) -> int:
        """Send what the worker buffered (without waiting for the broker)."""
        sent = 0
        for fragment in self._worker.take():
            # Wide records and embeddings: one fragment may take several messages (in order).
            for value in fragments.encode_bounded(fragment):
                future = self._producer.send(
                    self._topic,
                    key=fragment.model.encode("utf-8"),
                    value=value,
                    partition=fragments.partition_for(fragment.model, self._partitions),
                )
                self._sends.add(future)
                sent += 1
        self.fragments_sent += sent
        return sent

    def make_durable(self, consumer: source.Source) -> bool:
        """Fragments acknowledged and dead letters flushed, then the input offsets committed."""
        self._last_durable = self._clock()
        self._held_bytes = 0
        for unjoined in self._worker.expire():
            self.dlq.send(unjoined, None)
        try:
            self.publish()
            self._producer.flush(timeout=30)
        except kafka_errors.KafkaError as exc:
            failure: BaseException | None = exc
            self._sends.take_failure()  # this checkpoint failed: its sends are judged no further
        else:
            failure = self._sends.take_failure()
        if failure is not None:
            log.warning(
                "the broker did not acknowledge window fragments (%s); input offsets stay uncommitted "
                "and the records are read again, nothing is lost. Check the broker if this repeats",
                errors.describe(failure),
            )
            self._read_again(consumer)
            return False
        if not self.dlq.flush(timeout_s=10.0):
            log.warning(
                "dead letters not yet on the broker; input offsets stay uncommitted and the records "
                "are read again. Check the dead-letter topic's broker if this repeats"
            )
            return False
        predictions = self._worker.counts.predictions
        self._metrics.record_out(predictions - self._predictions_counted)
        self._predictions_counted = predictions
        committed = consumer.commit(list(self._uncommitted.values()))
        if committed:
            self._uncommitted = {}
            self._first_uncommitted = {}
        return committed

    def _read_again(self, consumer: source.Source) -> None:
        """Rewind to the first record since the last commit: the buffered work of this checkpoint
        was handed to the producer and may be lost, so it is done again (fragments that did arrive
        come twice; the evaluator drops entries at positions it has counted)."""
        owned = set(consumer.assignment())
        for (topic, partition), offset in self._first_uncommitted.items():
            where = source.Partition(topic, partition)
            if where in owned:  # one that moved is re-read by its new owner from the last commit
                consumer.rewind(where, offset)
        self._uncommitted = {}
        self._first_uncommitted = {}

    def revoked(self, partitions: Sequence[source.Partition], consumer: source.Source) -> None:
        # Publish what was ingested from them; their offsets are the new owner's now (it re-reads
        # from the last commit; the evaluator drops what it already counted).
        if any(p.topic in self.topics for p in partitions):
            self.make_durable(consumer)

    def close(self, consumer: source.Source, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.make_durable(consumer)
        self.dlq.close(timeout_s=max(0.1, deadline - time.monotonic()))

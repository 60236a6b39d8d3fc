"""The ingest stage without Kafka: raw input messages in, window fragments and dead letters out.

Parse and validate each message (a ``Rejected`` goes back to the caller for the dead-letter
topic), join labels to predictions by request id (the prediction and label topics are
co-partitioned by request id, so one worker sees both halves of a pair), and buffer entries per
model until ``take`` hands them out as fragments. Both the sidecar loop (Kafka) and replay
(files) drive it, so they parse and join alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from agent.ingest import fragments, kserve, label_join, parsing, records, source
from agent.observability import errors
from agent.observability import metrics as metrics_mod

# How much of an exception's text a dead letter carries.
DETAIL_CHARS = 300


@dataclasses.dataclass
class IngestCounts:
    predictions: int = 0
    labels: int = 0
    joined: int = 0
    rejected: int = 0


class IngestWorker:
    def __init__(
        self,
        *,
        parser: parsing.RecordParser,
        labels_topic: str | None,
        join: label_join.LabelJoin | None,
        producer: str,
        max_fragment_records: int,
        kserve_adapter: kserve.KServeAdapter | None = None,
        wall_clock: Callable[[], float] | None = None,
        max_future_skew_s: float | None = None,
        fragment_format: int = fragments.FORMAT,
    ) -> None:
        """``wall_clock`` and ``max_future_skew_s``: records stamped further ahead are rejected
        (None: no check, as in replay, where event time is the only clock). ``fragment_format``: how
        the fragments are written (``fragments.FORMATS``)."""
        if fragment_format not in fragments.FORMATS:
            raise ValueError(f"fragment_format must be one of {fragments.FORMATS}, got {fragment_format}")
        if max_fragment_records < 1:
            raise ValueError(f"max_fragment_records must be >= 1, got {max_fragment_records}")
        self._parser = parser
        self._labels_topic = labels_topic
        self._join = join
        self._producer = producer
        self._max_records = max_fragment_records
        self._kserve = kserve_adapter
        self._wall_clock = wall_clock
        self._max_future_skew_s = max_future_skew_s
        self._format = fragment_format
        self._pending: dict[str, list[fragments.Entry]] = {}
        self._watermarks: dict[int, float] = {}
        self.counts = IngestCounts()

    def add(self, message: source.RawMessage) -> list[records.Rejected]:
        """Take one input message; what it brought that is invalid comes back for dead-lettering.

        Never raises: a message that makes any step raise comes back rejected as
        ``processing_error`` with the exception (what it added before raising stays added).
        """
        try:
            return self._add(message)
        except Exception as exc:
            return self._rejected(
                records.Rejected(records.PROCESSING_ERROR, errors.describe(exc)[:DETAIL_CHARS], message.value)
            )

    def _add(self, message: source.RawMessage) -> list[records.Rejected]:
        if self._labels_topic is not None and message.topic == self._labels_topic:
            rejected = self._take_label(message)
        elif self._kserve is not None:
            rejected = self._take_kserve(message, self._kserve)
        else:
            rejected = self._take_prediction(message)
        return [] if rejected is None else self._rejected(rejected)

    def _take_label(self, message: source.RawMessage) -> records.Rejected | None:
        label = self._parser.parse_label(message.value)
        if isinstance(label, records.Rejected):
            return label
        ahead = self._too_far_ahead(label.timestamp, message.value)
        if ahead is None:
            self.add_label(label, message.partition, message.offset)
        return ahead

    def _take_kserve(
        self, message: source.RawMessage, adapter: kserve.KServeAdapter
    ) -> records.Rejected | None:
        if len(message.value) > self._parser.max_bytes:
            return records.Rejected(
                records.OVERSIZE,
                f"KServe event of {len(message.value)} bytes, more than kafka.max_message_bytes="
                f"{self._parser.max_bytes}",
                message.value,
            )
        joined = adapter.add(message)
        if isinstance(joined, records.Rejected):
            return joined
        ahead = self._too_far_ahead(max((r.timestamp for r in joined), default=None), message.value)
        if ahead is None:
            for record in joined:
                self.add_prediction(record, message.partition, message.offset)
        return ahead

    def _take_prediction(self, message: source.RawMessage) -> records.Rejected | None:
        parsed = self._parser.parse_prediction(message.value)
        if isinstance(parsed, records.Rejected):
            return parsed
        ahead = self._too_far_ahead(parsed.timestamp, message.value)
        if ahead is None:
            self.add_prediction(parsed, message.partition, message.offset)
        return ahead

    def _too_far_ahead(self, latest: float | None, raw: bytes) -> records.Rejected | None:
        if self._wall_clock is None or self._max_future_skew_s is None or latest is None:
            return None
        now = self._wall_clock()
        if latest <= now + self._max_future_skew_s:
            return None
        return records.Rejected(
            records.INVALID_VALUE,
            f"field timestamp: {latest:.0f} is {latest - now:.0f} s ahead of the agent's clock, more than "
            f"kafka.max_future_skew_s={self._max_future_skew_s:.0f} (a producer's clock or unit is wrong: "
            "milliseconds?)",
            raw,
        )

    def _rejected(self, rejected: records.Rejected) -> list[records.Rejected]:
        self.counts.rejected += 1
        return [rejected]

    def add_prediction(self, record: records.PredictionRecord, partition: int, offset: int) -> None:
        """A valid prediction read at ``offset`` of input ``partition`` (its arrival index)."""
        self.counts.predictions += 1
        self._append(record, fragments.Entry(record, offset, fragments.PREDICTIONS, partition, offset))
        if record.timestamp > self._watermarks.get(partition, float("-inf")):
            self._watermarks[partition] = record.timestamp
        if self._join is not None:
            joined = self._join.add_prediction(record, offset)
            if joined is not None:
                self._add_joined(joined, fragments.PREDICTIONS, partition, offset)

    def add_label(self, label: records.LabelRecord, partition: int, offset: int) -> None:
        """A valid label read at ``offset`` of labels ``partition``."""
        self.counts.labels += 1
        if self._join is not None:
            joined = self._join.add_label(label)
            if joined is not None:
                self._add_joined(joined, fragments.LABELS, partition, offset)

    def _add_joined(self, joined: label_join.JoinedRecord, stream: int, partition: int, offset: int) -> None:
        self.counts.joined += 1
        entry = fragments.Entry(joined.record, joined.index, stream, partition, offset, True, joined.label)
        self._append(joined.record, entry)

    def _append(self, record: records.PredictionRecord, entry: fragments.Entry) -> None:
        pending = self._pending.get(record.model_name)
        if pending is None:
            pending = self._pending[record.model_name] = []
        pending.append(entry)

    def expire(self) -> list[records.Rejected]:
        """Age the label join and the KServe pairing; unpaired KServe events come back as rejected."""
        if self._join is not None:
            self._join.expire()
        return self._kserve.expire() if self._kserve is not None else []

    @property
    def join(self) -> label_join.LabelJoin | None:
        """The label join's state; None without a labels source."""
        return self._join

    @property
    def buffered(self) -> int:
        return sum(len(entries) for entries in self._pending.values())

    def take(self) -> list[fragments.Fragment]:
        """Everything buffered, as fragments of at most ``max_fragment_records`` entries per model."""
        taken: list[fragments.Fragment] = []
        for model, entries in self._pending.items():
            for start in range(0, len(entries), self._max_records):
                chunk = entries[start : start + self._max_records]
                taken.append(
                    fragments.Fragment(self._format, model, chunk, dict(self._watermarks), self._producer)
                )
        self._pending = {}
        return taken


def join_from(
    ttl_s: float,
    max_pending: int,
    labels_topic: str | None,
    clock: Callable[[], float],
    *,
    max_bytes: int = label_join.UNBOUNDED_BYTES,
    metrics: metrics_mod.AgentMetrics | None = None,
) -> label_join.LabelJoin | None:
    """No join state at all without a labels source; with one, bounded in entries and bytes
    (``max_bytes``: the join's share of ``memory.budget_mib``)."""
    if labels_topic is None:
        return None
    return label_join.LabelJoin(ttl_s, max_pending, clock=clock, max_bytes=max_bytes, metrics=metrics)

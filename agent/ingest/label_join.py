"""Joins ground-truth labels to predictions by ``request_id``, within a TTL.

Either side may arrive first. A prediction waits ``ttl_s`` for its label, then counts as
unlabelled; a label whose prediction never came (or came too long ago) waits ``ttl_s`` too and
then counts as an orphan. Ages are measured on the injected ``clock`` at arrival, so replay can
drive it with event time and tests with a fake clock.

Memory is bounded twice: at most ``max_pending`` predictions and ``max_pending`` labels wait, and
everything the join holds stays under ``max_bytes``; beyond either the oldest is evicted
(``evicted_predictions`` / ``evicted_labels``, exported as
``drift_agent_buffer_evicted_total{buffer="label_join"}``). A waiting prediction is held as its
msgpack encoding (a few hundred bytes for 20 features, against kilobytes as Python objects) and
decoded again when its label arrives, so the byte bound is the encoded size plus a fixed
per-entry estimate. A second label for a request already joined within the TTL is a duplicate
(``duplicate_labels``), never a second join.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec

from agent.ingest import records as records_mod
from agent.observability import metrics as metrics_mod

Label = float | str
_Entry = TypeVar("_Entry", bound=tuple[Any, ...])

# Python's cost of one waiting entry beyond its payload: the OrderedDict slot and link, the key
# string's header, the entry tuple, its float and int, the bytes object's header (measured with
# tracemalloc on CPython 3.11: ~290 bytes; rounded up so the bound errs on the safe side).
ENTRY_OVERHEAD_BYTES: Final = 320
# No byte bound given: the entry bound alone applies (tests and callers without a budget).
UNBOUNDED_BYTES: Final = 1 << 62
BUFFER_NAME: Final = "label_join"

_encoder = msgspec.msgpack.Encoder(enc_hook=records_mod.encode_hook)
_decoder = msgspec.msgpack.Decoder(records_mod.PredictionRecord)


@dataclasses.dataclass(frozen=True, slots=True)
class JoinedRecord:
    record: records_mod.PredictionRecord
    label: Label
    index: int  # arrival index of the prediction (as given to add_prediction)


class LabelJoin:
    """Pairs predictions with labels by request id (rules in the module docstring)."""

    def __init__(
        self,
        ttl_s: float,
        max_pending: int,
        *,
        clock: Callable[[], float],
        max_bytes: int = UNBOUNDED_BYTES,
        metrics: metrics_mod.AgentMetrics | None = None,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"labels.ttl_s must be > 0, got {ttl_s}")
        if max_pending < 1:
            raise ValueError(f"labels.max_pending must be >= 1, got {max_pending}")
        if max_bytes < 64 * ENTRY_OVERHEAD_BYTES:
            raise ValueError(
                f"the label join's byte bound must be >= {64 * ENTRY_OVERHEAD_BYTES}, got {max_bytes}: "
                "raise memory.budget_mib"
            )
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._clock = clock
        self._metrics = metrics
        # Insertion order is arrival order, so the oldest entries are always at the front.
        # A prediction waits as (arrival, msgpack bytes, arrival index).
        self._predictions: collections.OrderedDict[str, tuple[float, bytes, int]] = collections.OrderedDict()
        self._labels: collections.OrderedDict[str, tuple[float, Label]] = collections.OrderedDict()
        # Request ids joined within the TTL: a later label for one is a duplicate.
        self._joined_ids: collections.OrderedDict[str, tuple[float]] = collections.OrderedDict()
        self._scratch = bytearray()
        self.held_bytes = 0
        self.joined = 0
        self.expired_unlabelled = 0
        self.orphan_labels_expired = 0
        self.duplicate_labels = 0
        self.duplicate_predictions = 0
        self.evicted_predictions = 0
        self.evicted_labels = 0
        self.evicted_joined_ids = 0
        if metrics is not None:
            metrics.hold_bytes(BUFFER_NAME, lambda: float(self.held_bytes))

    @property
    def pending(self) -> int:
        """Predictions waiting for their label."""
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        """Labels waiting for their prediction."""
        return len(self._labels)

    def add_prediction(self, record: records_mod.PredictionRecord, index: int = -1) -> JoinedRecord | None:
        """A prediction arrived; the joined pair if its label was already waiting."""
        request_id = record.request_id
        waiting = self._labels.pop(request_id, None)
        if waiting is not None:
            self.held_bytes -= _label_size(request_id, waiting[1])
            return self._join(request_id, record, waiting[1], index)
        if request_id in self._predictions or request_id in self._joined_ids:
            # Producers retry: the first copy is the one the label will be joined to.
            self.duplicate_predictions += 1
            return None
        # Into a reused buffer, then copied: Encoder.encode's result keeps ~15 % of slack.
        _encoder.encode_into(record, self._scratch)
        encoded = bytes(self._scratch)
        if len(self._predictions) >= self.max_pending:
            self._evict_prediction()
        self._predictions[request_id] = (self._clock(), encoded, index)
        self.held_bytes += _prediction_size(request_id, encoded)
        self._fit_bytes()
        return None

    def add_label(self, label: records_mod.LabelRecord) -> JoinedRecord | None:
        """A label arrived; the joined pair if its prediction was waiting."""
        request_id = label.request_id
        waiting = self._predictions.pop(request_id, None)
        if waiting is not None:
            self.held_bytes -= _prediction_size(request_id, waiting[1])
            return self._join(request_id, _decoder.decode(waiting[1]), label.label, waiting[2])
        if request_id in self._labels or request_id in self._joined_ids:
            self.duplicate_labels += 1
            return None
        if len(self._labels) >= self.max_pending:
            self._evict_label()
        self._labels[request_id] = (self._clock(), label.label)
        self.held_bytes += _label_size(request_id, label.label)
        self._fit_bytes()
        return None

    def _join(
        self, request_id: str, record: records_mod.PredictionRecord, label: Label, index: int
    ) -> JoinedRecord:
        self.joined += 1
        if len(self._joined_ids) >= self.max_pending:
            self._evict_joined_id()
        self._joined_ids[request_id] = (self._clock(),)
        self.held_bytes += _joined_id_size(request_id)
        self._fit_bytes()
        return JoinedRecord(record, label, index)

    def _fit_bytes(self) -> None:
        """Evict the oldest until the join fits its byte bound: remembered joined ids first (they
        only catch duplicates), then whichever of a waiting prediction or label arrived first."""
        while self.held_bytes > self.max_bytes:
            if self._joined_ids:
                self._evict_joined_id()
            elif self._predictions and (
                not self._labels or _oldest(self._predictions) <= _oldest(self._labels)
            ):
                self._evict_prediction()
            elif self._labels:
                self._evict_label()
            else:
                return

    def _evict_prediction(self) -> None:
        request_id, (_, encoded, _) = self._predictions.popitem(last=False)
        self.held_bytes -= _prediction_size(request_id, encoded)
        self.evicted_predictions += 1
        self._count_evicted()

    def _evict_label(self) -> None:
        request_id, (_, value) = self._labels.popitem(last=False)
        self.held_bytes -= _label_size(request_id, value)
        self.evicted_labels += 1
        self._count_evicted()

    def _evict_joined_id(self) -> None:
        request_id, _ = self._joined_ids.popitem(last=False)
        self.held_bytes -= _joined_id_size(request_id)
        self.evicted_joined_ids += 1

    def _count_evicted(self) -> None:
        if self._metrics is not None:
            self._metrics.buffer_evicted(BUFFER_NAME)

    def expire(self) -> int:
        """Drop entries older than the TTL; returns how many predictions and labels were dropped."""
        cutoff = self._clock() - self.ttl_s
        unlabelled = self._drop_older(self._predictions, cutoff, lambda k, e: _prediction_size(k, e[1]))
        orphans = self._drop_older(self._labels, cutoff, lambda k, e: _label_size(k, e[1]))
        self._drop_older(self._joined_ids, cutoff, lambda k, _: _joined_id_size(k))
        self.expired_unlabelled += unlabelled
        self.orphan_labels_expired += orphans
        return unlabelled + orphans

    def _drop_older(
        self,
        entries: collections.OrderedDict[str, _Entry],
        cutoff: float,
        size: Callable[[str, _Entry], int],
    ) -> int:
        """Pop entries (arrival time first in each) that arrived before ``cutoff``, oldest first."""
        dropped = 0
        while entries:
            if next(iter(entries.values()))[0] >= cutoff:
                break
            request_id, entry = entries.popitem(last=False)
            self.held_bytes -= size(request_id, entry)
            dropped += 1
        return dropped


def _oldest(entries: collections.OrderedDict[str, _Entry]) -> float:
    arrival: float = next(iter(entries.values()))[0]
    return arrival


def _prediction_size(request_id: str, encoded: bytes) -> int:
    return ENTRY_OVERHEAD_BYTES + len(request_id) + len(encoded)


def _label_size(request_id: str, value: Label) -> int:
    return ENTRY_OVERHEAD_BYTES + len(request_id) + (len(value) if isinstance(value, str) else 0)


def _joined_id_size(request_id: str) -> int:
    return ENTRY_OVERHEAD_BYTES + len(request_id)

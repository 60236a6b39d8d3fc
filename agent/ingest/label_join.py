"""Joins ground-truth labels to predictions by ``request_id``, within a TTL.

Either side may arrive first. A prediction waits ``ttl_s`` for its label, then counts as
unlabelled; a label whose prediction never came (or came too long ago) waits ``ttl_s`` too and
then counts as an orphan. Ages are measured on the injected ``clock`` at arrival, so replay can
drive it with event time and tests with a fake clock.

Memory is bounded: at most ``max_pending`` predictions and ``max_pending`` labels wait; beyond
that the oldest is evicted (``evicted_predictions`` / ``evicted_labels``). A second label for a
request already joined within the TTL is a duplicate (``duplicate_labels``), never a second join.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from agent.ingest import records as records_mod

Label = float | str
_Entry = TypeVar("_Entry", bound=tuple[Any, ...])


@dataclasses.dataclass(frozen=True, slots=True)
class JoinedRecord:
    record: records_mod.PredictionRecord
    label: Label
    index: int  # arrival index of the prediction (as given to add_prediction)


class LabelJoin:
    """Pairs predictions with labels by request id (rules in the module docstring)."""

    def __init__(self, ttl_s: float, max_pending: int, *, clock: Callable[[], float]) -> None:
        if not ttl_s > 0:
            raise ValueError(f"labels.ttl_s must be > 0, got {ttl_s}")
        if max_pending < 1:
            raise ValueError(f"labels.max_pending must be >= 1, got {max_pending}")
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self._clock = clock
        # Insertion order is arrival order, so the oldest entries are always at the front.
        self._predictions: collections.OrderedDict[str, tuple[float, records_mod.PredictionRecord, int]] = (
            collections.OrderedDict()
        )
        self._labels: collections.OrderedDict[str, tuple[float, Label]] = collections.OrderedDict()
        # Request ids joined within the TTL: a later label for one is a duplicate.
        self._joined_ids: collections.OrderedDict[str, tuple[float]] = collections.OrderedDict()
        self.joined = 0
        self.expired_unlabelled = 0
        self.orphan_labels_expired = 0
        self.duplicate_labels = 0
        self.duplicate_predictions = 0
        self.evicted_predictions = 0
        self.evicted_labels = 0

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
            return self._join(request_id, record, waiting[1], index)
        if request_id in self._predictions or request_id in self._joined_ids:
            # Producers retry: the first copy is the one the label will be joined to.
            self.duplicate_predictions += 1
            return None
        if len(self._predictions) >= self.max_pending:
            self._predictions.popitem(last=False)
            self.evicted_predictions += 1
        self._predictions[request_id] = (self._clock(), record, index)
        return None

    def add_label(self, label: records_mod.LabelRecord) -> JoinedRecord | None:
        """A label arrived; the joined pair if its prediction was waiting."""
        request_id = label.request_id
        waiting = self._predictions.pop(request_id, None)
        if waiting is not None:
            return self._join(request_id, waiting[1], label.label, waiting[2])
        if request_id in self._labels or request_id in self._joined_ids:
            self.duplicate_labels += 1
            return None
        if len(self._labels) >= self.max_pending:
            self._labels.popitem(last=False)
            self.evicted_labels += 1
        self._labels[request_id] = (self._clock(), label.label)
        return None

    def _join(
        self, request_id: str, record: records_mod.PredictionRecord, label: Label, index: int
    ) -> JoinedRecord:
        self.joined += 1
        if len(self._joined_ids) >= self.max_pending:
            self._joined_ids.popitem(last=False)
        self._joined_ids[request_id] = (self._clock(),)
        return JoinedRecord(record, label, index)

    def expire(self) -> int:
        """Drop entries older than the TTL; returns how many predictions and labels were dropped."""
        cutoff = self._clock() - self.ttl_s
        unlabelled = _drop_older(self._predictions, cutoff)
        orphans = _drop_older(self._labels, cutoff)
        _drop_older(self._joined_ids, cutoff)
        self.expired_unlabelled += unlabelled
        self.orphan_labels_expired += orphans
        return unlabelled + orphans


def _drop_older(entries: collections.OrderedDict[str, _Entry], cutoff: float) -> int:
    """Pop entries (arrival time first in each) that arrived before ``cutoff``, oldest first."""
    dropped = 0
    while entries:
        if next(iter(entries.values()))[0] >= cutoff:
            break
        entries.popitem(last=False)
        dropped += 1
    return dropped

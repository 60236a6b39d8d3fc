"""Windows of records per (model version, segment), closed into columnar ``Window`` objects.

Kinds (``settings.WindowSettings``):

- ``count`` tumbling: a window closes every ``size`` records of its key.
- ``count`` sliding (``slide`` < ``size``): the last ``size`` records of a key are kept; a window
  closes when the first ``size`` have arrived, then every ``slide`` records.
- ``time`` (by EVENT time, ``record.timestamp``): windows cover ``[end - duration_s, end)`` with
  ``end`` on epoch multiples of ``slide_s`` (tumbling: ``slide_s = duration_s``). Records may
  arrive out of order (several input partitions, several ingesting agents): a window closes once
  the watermark - the event time every input has reached - is ``allowed_lateness_s`` past its end
  (``advance``). Windows without a record are not emitted. ``tick()`` also closes the windows of a
  key that has received nothing for ``grace_s`` of the clock, up to ``grace_s`` before the clock,
  so a quiet model still gets its last window judged. A key still receiving records is left to the
  watermark: a backlog of old records (a consumer catching up after an outage) is windowed by its
  event time like live traffic, not cut into fragments by the clock.

Late records: a record older than the start of the next window to close cannot go back to a
window that has already closed. It is counted in ``late_records`` and put in that next window
(keeping its own timestamp), so that nothing is silently dropped; it leaves with its records.

Memory is bounded: at most ``size`` records per key (count kinds), at most
``max_time_window_records`` per key (time kinds: beyond that a seeded uniform sample is kept and
the excess counted in ``sampled_out``), and at most ``max_open_windows`` keys; the least recently
used key is evicted without emitting (counted in ``evicted_windows`` / ``evicted_records``).
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from agent import settings as settings_mod
from agent.ingest import records as records_mod
from agent.pipeline import reference
from detectors import window as window_mod

SegmentKey = tuple[tuple[str, str], ...]
WindowKey = tuple[str, SegmentKey]
Label = float | str | None

# The segment value of a record that lacks a ``segment_by`` attribute.
MISSING_SEGMENT: Final = "(none)"
DEFAULT_GRACE_S: Final = 30.0
DEFAULT_MAX_TIME_WINDOW_RECORDS: Final = 100_000
# Window ends are epoch seconds up to ``records.MAX_EPOCH_SECONDS`` (1e11), where a float step is
# about 1.5e-5 s: a smaller slide vanishes in rounding (1e11 + 1e-6 == 1e11) and closing loops forever.
MIN_SLIDE_S: Final = 0.001


class _CountBuffer:
    __slots__ = ("fresh", "labels", "last_index", "records")

    def __init__(self, capacity: int | None) -> None:
        # Sliding windows keep the last `size` records: a bounded deque drops the oldest itself.
        self.records: collections.deque[records_mod.PredictionRecord] | list[records_mod.PredictionRecord] = (
            collections.deque(maxlen=capacity) if capacity is not None else []
        )
        # Created on the first label only: prediction windows never pay for it.
        self.labels: collections.deque[Label] | list[Label] | None = None
        self.last_index = -1
        self.fresh = 0  # records added since the last window closed (sliding)

    def __len__(self) -> int:
        return len(self.records)

    def add_label(self, label: Label) -> None:
        if self.labels is None:
            earlier: list[Label] = [None] * (len(self.records) - 1)
            maxlen = self.records.maxlen if isinstance(self.records, collections.deque) else None
            self.labels = collections.deque(earlier, maxlen=maxlen) if maxlen is not None else earlier
        self.labels.append(label)


class _TimeBuffer:
    __slots__ = ("arrived", "end", "entries", "fresh", "seen")

    def __init__(self, end: float, arrived: float) -> None:
        self.end = end  # the next window to close covers [end - duration_s, end)
        self.arrived = arrived  # the clock when the last record arrived (``tick`` closes idle keys)
        # (placement time, arrival index, record, label): the placement is the record's event
        # time, or the start of the next window to close for a late record.
        self.entries: list[tuple[float, int, records_mod.PredictionRecord, Label]] = []
        self.fresh = 0  # records added since the last window closed
        self.seen = 0  # records offered since the buffer's oldest window opened (uniform sample)

    def __len__(self) -> int:
        return len(self.entries)


class CountBufferState(msgspec.Struct, array_like=True, gc=False):
    version: str
    segment: list[tuple[str, str]]
    records: list[records_mod.PredictionRecord]
    labels: list[int | float | str | None] | None
    last_index: int
    fresh: int


class TimeBufferState(msgspec.Struct, array_like=True, gc=False):
    version: str
    segment: list[tuple[str, str]]
    end: float
    # (event time, arrival index, record, label)
    entries: list[tuple[float, int, records_mod.PredictionRecord, int | float | str | None]]
    fresh: int
    seen: int


class WindowsState(msgspec.Struct, array_like=True, gc=False):
    """Everything a ``WindowManager`` buffers, as data: what a restarted evaluator resumes from."""

    counted: list[CountBufferState]
    timed: list[TimeBufferState]
    rng: list[int]
    counters: dict[str, int]
    # Latest event time seen, and the watermark every input reached (-inf: none yet).
    watermarks: tuple[float, float] = (-math.inf, -math.inf)


_COUNTERS = ("late_records", "evicted_windows", "evicted_records", "sampled_out", "windows_closed")


class WindowManager:
    """Buffers records per key and closes them into ``Window`` objects (rules in the module doc)."""

    def __init__(
        self,
        settings: settings_mod.WindowSettings,
        schema: reference.FeatureSchema,
        *,
        clock: Callable[[], float] = time.time,
        grace_s: float = DEFAULT_GRACE_S,
        allowed_lateness_s: float = 0.0,
        max_time_window_records: int = DEFAULT_MAX_TIME_WINDOW_RECORDS,
        seed: int = 0,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self._clock = clock
        self._grace_s = grace_s
        self._lateness = allowed_lateness_s
        # Latest event time of any record seen, and what every input reached (``advance``).
        self._watermark = -math.inf
        self._inputs_watermark = -math.inf
        self._segment_by = tuple(settings.segment_by)
        self._max_open = settings.max_open_windows
        self._count_kind = settings.kind == "count"
        self._size = settings.size
        self._slide = self._count_slide(settings)
        self._duration = settings.duration_s
        self._slide_s = self._time_slide(settings)
        if max_time_window_records < 1:
            raise ValueError(f"max_time_window_records must be >= 1, got {max_time_window_records}")
        self._time_cap = max_time_window_records
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not security
        # One of the two is used, by kind; least recently used key first.
        self._counted: collections.OrderedDict[WindowKey, _CountBuffer] = collections.OrderedDict()
        self._timed: collections.OrderedDict[WindowKey, _TimeBuffer] = collections.OrderedDict()
        self.column_stats = reference.ColumnStats()
        self.late_records = 0
        self.evicted_windows = 0
        self.evicted_records = 0
        self._evicted_keys: list[WindowKey] = []
        self.sampled_out = 0
        self.windows_closed = 0

    @staticmethod
    def _count_slide(settings: settings_mod.WindowSettings) -> int | None:
        if settings.slide is None or settings.slide == settings.size:
            return None
        if settings.slide > settings.size:
            raise ValueError(
                f"window.slide ({settings.slide}) must be smaller than window.size ({settings.size}) "
                "for a sliding window; leave it null for a tumbling one"
            )
        return settings.slide

    @staticmethod
    def _time_slide(settings: settings_mod.WindowSettings) -> float:
        slide_s = settings.duration_s if settings.slide_s is None else settings.slide_s
        if settings.kind == "time" and slide_s < MIN_SLIDE_S:
            name = "window.duration_s" if settings.slide_s is None else "window.slide_s"
            raise ValueError(f"{name} ({slide_s:g}) must be at least {MIN_SLIDE_S:g} s for a time window")
        if settings.slide_s is None:
            return settings.duration_s
        if settings.slide_s > settings.duration_s:
            raise ValueError(
                f"window.slide_s ({settings.slide_s}) must not exceed window.duration_s "
                f"({settings.duration_s}); leave it null for a tumbling window"
            )
        return settings.slide_s

    # -- feeding ------------------------------------------------------------------------------------

    def add(
        self, record: records_mod.PredictionRecord, index: int, label: Label = None
    ) -> list[window_mod.Window]:
        """Buffer one record (``index``: its arrival position); return windows it closed."""
        key = self._key(record) if self._segment_by else (record.model_version, ())
        if not self._count_kind:
            return self._add_timed(key, record, index, label)
        # The count path is inlined: it runs once per record at ingest rate.
        buffers = self._counted
        buffer = buffers.get(key)
        if buffer is None:
            self._make_room(buffers)
            buffer = buffers[key] = _CountBuffer(self._size if self._slide is not None else None)
        elif len(buffers) > 1:
            buffers.move_to_end(key)
        rows = buffer.records
        rows.append(record)
        buffer.last_index = index
        if label is not None or buffer.labels is not None:
            buffer.add_label(label)
        if self._slide is None:
            if len(rows) < self._size:
                return []
            window = self._close_counted(key, buffer)
            buffer.records = []
            buffer.labels = None
            return [window]
        buffer.fresh += 1
        if len(rows) == self._size and buffer.fresh >= self._slide:
            return [self._close_counted(key, buffer)]
        return []

    def segment_of(self, record: records_mod.PredictionRecord) -> dict[str, str] | None:
        """The segment of the window ``record`` goes into (``Window.segment``), None unsegmented."""
        return dict(self._key(record)[1]) if self._segment_by else None

    def _key(self, record: records_mod.PredictionRecord) -> WindowKey:
        segment = record.segment or {}
        return (
            record.model_version,
            tuple((attribute, segment.get(attribute, MISSING_SEGMENT)) for attribute in self._segment_by),
        )

    def _make_room(self, buffers: collections.OrderedDict[WindowKey, Any]) -> None:
        if len(buffers) >= self._max_open:
            key, evicted = buffers.popitem(last=False)
            self.evicted_windows += 1
            self.evicted_records += len(evicted)
            self._evicted_keys.append(key)

    def take_evicted_keys(self) -> list[WindowKey]:
        """The keys evicted since the last call: their detector state may go too."""
        keys, self._evicted_keys = self._evicted_keys, []
        return keys

    def _close_counted(self, key: WindowKey, buffer: _CountBuffer) -> window_mod.Window:
        buffer.fresh = 0
        labels = list(buffer.labels) if buffer.labels is not None else None
        return self._window(key, list(buffer.records), labels, buffer.last_index)

    def _boundary_after(self, timestamp: float) -> float:
        return (math.floor(timestamp / self._slide_s) + 1) * self._slide_s

    def _add_timed(
        self, key: WindowKey, record: records_mod.PredictionRecord, index: int, label: Label
    ) -> list[window_mod.Window]:
        timestamp = record.timestamp
        buffers = self._timed
        buffer = buffers.get(key)
        if buffer is None:
            self._make_room(buffers)
            buffer = buffers[key] = _TimeBuffer(self._boundary_after(timestamp), self._clock())
        else:
            buffer.arrived = self._clock()
            if len(buffers) > 1:
                buffers.move_to_end(key)
        start = buffer.end - self._duration
        placement = timestamp
        if timestamp < start:
            self.late_records += 1
            placement = start
        buffer.fresh += 1
        buffer.seen += 1
        entry = (placement, index, record, label)
        if len(buffer.entries) < self._time_cap:
            buffer.entries.append(entry)
        else:
            self.sampled_out += 1
            slot = self._rng.randrange(buffer.seen)
            if slot < self._time_cap:
                buffer.entries[slot] = entry
        self._watermark = max(self._watermark, timestamp)
        return self._close_passed(self._watermark_of_inputs() - self._lateness)

    def advance(self, watermark: float) -> list[window_mod.Window]:
        """Every input has reached event time ``watermark``: close what is ``allowed_lateness_s`` behind."""
        if self._count_kind or watermark <= self._inputs_watermark:
            return []
        self._inputs_watermark = watermark
        return self._close_passed(watermark - self._lateness)

    def _watermark_of_inputs(self) -> float:
        # With one input the records themselves say how far it got; with several, ``advance``.
        return self._inputs_watermark if self._inputs_watermark > -math.inf else self._watermark

    def _close_passed(self, horizon: float) -> list[window_mod.Window]:
        """Close, for every key, the windows ending at or before ``horizon``."""
        closed: list[window_mod.Window] = []
        for key, buffer in self._timed.items():
            closed.extend(self._close_key(key, buffer, horizon))
        return closed

    def _close_key(self, key: WindowKey, buffer: _TimeBuffer, horizon: float) -> list[window_mod.Window]:
        closed: list[window_mod.Window] = []
        while buffer.end <= horizon:
            window = self._close_timed(key, buffer)
            if window is not None:
                closed.append(window)
            if not self._advance(buffer, buffer.end + self._slide_s):
                break
        return closed

    def _close_timed(self, key: WindowKey, buffer: _TimeBuffer) -> window_mod.Window | None:
        if not buffer.fresh or not buffer.entries:
            return None
        start = buffer.end - self._duration
        inside = [entry for entry in buffer.entries if start <= entry[0] < buffer.end]
        if not inside:
            return None
        # What the next (sliding) window holds that this one did not: without it, no new window.
        buffer.fresh = sum(1 for entry in buffer.entries if entry[0] >= buffer.end)
        labels = [entry[3] for entry in inside]
        return self._window(
            key,
            [entry[2] for entry in inside],
            labels if any(label is not None for label in labels) else None,
            max(entry[1] for entry in inside),
        )

    def _advance(self, buffer: _TimeBuffer, end: float) -> bool:
        """Move to the window ending at ``end`` (or, past a gap, at the next holding a record);
        False when nothing is left to close."""
        start = end - self._duration
        buffer.entries = [entry for entry in buffer.entries if entry[0] >= start]
        buffer.seen = len(buffer.entries)
        if not buffer.entries:
            buffer.end = end
            return False
        earliest = min(entry[0] for entry in buffer.entries)
        buffer.end = max(end, self._boundary_after(earliest))
        return True

    def _window(
        self,
        key: WindowKey,
        rows: list[records_mod.PredictionRecord],
        labels: list[Label] | None,
        last_index: int,
    ) -> window_mod.Window:
        self.windows_closed += 1
        return reference.to_window(
            rows,
            self.schema,
            last_record_index=last_index,
            labels=labels,
            model_version=key[0],
            segment=dict(key[1]) if self._segment_by else None,
            stats=self.column_stats,
        )

    # -- closing without a new record -------------------------------------------------------------

    def tick(self) -> list[window_mod.Window]:
        """Close the time windows of idle keys up to ``grace_s`` behind the clock (count kinds: none)."""
        if self._count_kind:
            return []
        horizon = self._clock() - self._grace_s
        closed: list[window_mod.Window] = []
        for key, buffer in self._timed.items():
            if buffer.arrived <= horizon:
                closed.extend(self._close_key(key, buffer, horizon))
        return closed

    def flush(self) -> list[window_mod.Window]:
        """Close every window holding records not yet emitted (shutdown, end of a replay).

        All buffers are cleared afterwards.
        """
        closed = [
            self._close_counted(key, buffer)
            for key, buffer in self._counted.items()
            # Tumbling buffers hold only unemitted records; sliding ones also hold emitted ones.
            if len(buffer) and (buffer.fresh or self._slide is None)
        ]
        for key, timed in self._timed.items():
            while timed.entries:
                window = self._close_timed(key, timed)
                if window is not None:
                    closed.append(window)
                if not self._advance(timed, timed.end + self._slide_s):
                    break
        self._counted.clear()
        self._timed.clear()
        return closed

    # -- state as data ------------------------------------------------------------------------------

    def state(self) -> WindowsState:
        """The open windows and counters (the schema and settings come from the config, not here)."""
        version, internal, _ = self._rng.getstate()
        return WindowsState(
            counted=[
                CountBufferState(
                    key[0],
                    list(key[1]),
                    list(buffer.records),
                    list(buffer.labels) if buffer.labels is not None else None,
                    buffer.last_index,
                    buffer.fresh,
                )
                for key, buffer in self._counted.items()
            ],
            timed=[
                TimeBufferState(
                    key[0], list(key[1]), buffer.end, list(buffer.entries), buffer.fresh, buffer.seen
                )
                for key, buffer in self._timed.items()
            ],
            rng=[version, *internal],
            counters={name: getattr(self, name) for name in _COUNTERS},
            watermarks=(self._watermark, self._inputs_watermark),
        )

    def restore(self, state: WindowsState) -> None:
        """Continue from ``state``; buffers beyond this manager's bounds are trimmed to them."""
        self._counted.clear()
        self._timed.clear()
        capacity = self._size if self._slide is not None else None
        for counted in state.counted[-self._max_open :]:
            buffer = _CountBuffer(capacity)
            for record in counted.records[-self._size :]:
                buffer.records.append(record)
            if counted.labels is not None:
                labels = counted.labels[-self._size :]
                buffer.labels = collections.deque(labels, maxlen=capacity) if capacity is not None else labels
            buffer.last_index = counted.last_index
            buffer.fresh = counted.fresh
            self._counted[(counted.version, tuple(counted.segment))] = buffer
        for timed in state.timed[-self._max_open :]:
            # Arrival times are not stored: a restored key counts as having just received a record.
            time_buffer = _TimeBuffer(timed.end, self._clock())
            time_buffer.entries = list(timed.entries[: self._time_cap])
            time_buffer.fresh = timed.fresh
            time_buffer.seen = timed.seen
            self._timed[(timed.version, tuple(timed.segment))] = time_buffer
        self._rng.setstate((state.rng[0], tuple(state.rng[1:]), None))
        for name in _COUNTERS:
            setattr(self, name, int(state.counters.get(name, 0)))
        self._watermark, self._inputs_watermark = state.watermarks

    def fill(self) -> dict[WindowKey, int]:
        """Records buffered now, per (model_version, segment) key (the window_fill metric)."""
        buffers: collections.OrderedDict[WindowKey, Any] = self._counted if self._count_kind else self._timed
        return {key: len(buffer) for key, buffer in buffers.items()}

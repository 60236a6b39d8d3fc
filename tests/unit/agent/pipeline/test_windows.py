"""WindowManager: count/time, tumbling/sliding, keys, late records, bounded memory."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agent import settings
from agent.ingest import records
from agent.pipeline import reference, windows
from detectors import window as window_mod

SCHEMA = reference.FeatureSchema(("x", "colour"), ("numeric", "categorical"))


def rec(
    i: int, *, ts: float | None = None, version: str = "1", segment: dict[str, str] | None = None
) -> records.PredictionRecord:
    return records.PredictionRecord(
        request_id=f"r-{i}",
        timestamp=float(i) if ts is None else ts,
        model_name="m",
        model_version=version,
        features={"x": float(i), "colour": "red" if i % 2 else "blue"},
        prediction=float(i % 3),
        segment=segment,
    )


def manager(**window: Any) -> windows.WindowManager:
    return windows.WindowManager(settings.WindowSettings(**window), SCHEMA, clock=lambda: 0.0)


def xs(window: Any) -> list[float]:
    return [float(value) for value in window.features["x"]]


def stamps(window: window_mod.Window) -> list[float]:
    assert window.timestamps is not None
    return [float(value) for value in window.timestamps]


def feed(wm: windows.WindowManager, items: list[records.PredictionRecord]) -> list[Any]:
    out = []
    for index, record in enumerate(items):
        out.extend(wm.add(record, index))
    return out


# -- count ------------------------------------------------------------------------------------------


def test_count_tumbling_emits_every_size_records() -> None:
    wm = manager(size=10)
    closed = feed(wm, [rec(i) for i in range(25)])
    assert [w.size for w in closed] == [10, 10]
    assert xs(closed[0]) == [float(i) for i in range(10)]
    assert xs(closed[1]) == [float(i) for i in range(10, 20)]
    assert [w.last_record_index for w in closed] == [9, 19]
    assert closed[0].model_version == "1" and closed[0].segment is None
    assert wm.fill() == {("1", ()): 5}


def test_window_closes_exactly_on_the_size_th_record() -> None:
    wm = manager(size=10)
    assert feed(wm, [rec(i) for i in range(9)]) == []
    assert len(wm.add(rec(9), 9)) == 1


def test_flush_closes_partial_windows_only_when_non_empty() -> None:
    wm = manager(size=10)
    feed(wm, [rec(i) for i in range(13)])
    flushed = wm.flush()
    assert [xs(w) for w in flushed] == [[10.0, 11.0, 12.0]]
    assert flushed[0].last_record_index == 12
    assert wm.flush() == []
    assert wm.fill() == {}


def test_count_sliding_keeps_last_size_and_emits_every_slide() -> None:
    wm = manager(size=10, slide=4)
    closed = feed(wm, [rec(i) for i in range(22)])
    # First when the window is full (record 9), then every 4 records: 13, 17, 21.
    assert [w.last_record_index for w in closed] == [9, 13, 17, 21]
    assert xs(closed[1]) == [float(i) for i in range(4, 14)]
    assert xs(closed[3]) == [float(i) for i in range(12, 22)]
    assert wm.fill() == {("1", ()): 10}


def test_count_sliding_flush_emits_only_new_records() -> None:
    wm = manager(size=10, slide=5)
    feed(wm, [rec(i) for i in range(15)])  # windows at 9 and 14; nothing new after
    assert wm.flush() == []
    wm2 = manager(size=10, slide=5)
    feed(wm2, [rec(i) for i in range(17)])
    flushed = wm2.flush()
    assert [w.last_record_index for w in flushed] == [16]
    assert xs(flushed[0]) == [float(i) for i in range(7, 17)]


def test_slide_larger_than_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"window.slide \(20\) must be smaller than window.size \(10\)"):
        manager(size=10, slide=20)


def test_slide_equal_to_size_is_tumbling() -> None:
    wm = manager(size=10, slide=10)
    assert [w.last_record_index for w in feed(wm, [rec(i) for i in range(30)])] == [9, 19, 29]


# -- keys -------------------------------------------------------------------------------------------


def test_windows_are_kept_per_model_version() -> None:
    wm = manager(size=10)
    items = [rec(i, version="1" if i % 2 else "2") for i in range(40)]
    closed = feed(wm, items)
    assert sorted(w.model_version for w in closed) == ["1", "1", "2", "2"]
    for window in closed:
        expected_parity = 1 if window.model_version == "1" else 0
        assert all(int(x) % 2 == expected_parity for x in xs(window))


def test_windows_are_kept_per_segment_and_missing_attribute_has_its_own_key() -> None:
    wm = manager(size=10, segment_by=["region"])
    items = [rec(i, segment={"region": "eu" if i % 2 else "us", "tier": "x"}) for i in range(20)]
    items += [rec(100 + i, segment=None) for i in range(10)]
    closed = feed(wm, items)
    assert sorted((w.segment or {})["region"] for w in closed) == ["(none)", "eu", "us"]
    eu = next(w for w in closed if w.segment == {"region": "eu"})
    assert all(int(x) % 2 == 1 for x in xs(eu))


def test_open_windows_are_bounded_and_least_recent_is_evicted() -> None:
    wm = manager(size=10, max_open_windows=2)
    feed(wm, [rec(0, version="a"), rec(1, version="b"), rec(2, version="a"), rec(3, version="c")])
    # "b" was least recently used when "c" arrived.
    assert set(wm.fill()) == {("a", ()), ("c", ())}
    assert wm.evicted_windows == 1 and wm.evicted_records == 1
    assert all(w.model_version != "b" for w in wm.flush())


def test_memory_per_key_is_bounded_by_size() -> None:
    wm = manager(size=10, slide=3)
    feed(wm, [rec(i) for i in range(1000)])
    assert max(wm.fill().values()) <= 10


# -- time -------------------------------------------------------------------------------------------


def test_time_tumbling_windows_align_to_epoch_multiples() -> None:
    wm = manager(kind="time", duration_s=10.0)
    event_times = [3.0, 5.0, 9.999, 10.0, 15.0, 19.0, 20.5]
    closed = feed(wm, [rec(i, ts=t) for i, t in enumerate(event_times)])
    assert [stamps(w) for w in closed] == [[3.0, 5.0, 9.999], [10.0, 15.0, 19.0]]
    assert [w.last_record_index for w in closed] == [2, 5]
    assert [stamps(w) for w in wm.flush()] == [[20.5]]


def test_time_gap_skips_empty_windows() -> None:
    wm = manager(kind="time", duration_s=10.0)
    closed = feed(wm, [rec(0, ts=1.0), rec(1, ts=2.0), rec(2, ts=95.0), rec(3, ts=101.0)])
    assert [stamps(w) for w in closed] == [[1.0, 2.0], [95.0]]


def test_time_sliding_windows() -> None:
    wm = manager(kind="time", duration_s=10.0, slide_s=5.0)
    event_times = [1.0, 4.0, 6.0, 9.0, 11.0, 14.0, 16.0]
    closed = feed(wm, [rec(i, ts=t) for i, t in enumerate(event_times)])
    # Windows [-5, 5), [0, 10), [5, 15) close when 6.0, 11.0 and 16.0 arrive.
    assert [stamps(w) for w in closed] == [[1.0, 4.0], [1.0, 4.0, 6.0, 9.0], [6.0, 9.0, 11.0, 14.0]]
    assert [w.last_record_index for w in closed] == [1, 3, 5]


def test_slide_s_larger_than_duration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"window.slide_s \(20.0\) must not exceed window.duration_s"):
        manager(kind="time", duration_s=10.0, slide_s=20.0)


def test_late_record_is_counted_and_kept_in_the_open_window() -> None:
    wm = manager(kind="time", duration_s=10.0)
    closed = feed(wm, [rec(0, ts=1.0), rec(1, ts=12.0), rec(2, ts=3.0), rec(3, ts=21.0)])
    assert wm.late_records == 1
    assert [xs(w) for w in closed] == [[0.0], [1.0, 2.0]]
    # The late record keeps its own event time in the window's timestamps column.
    assert stamps(closed[1]) == [12.0, 3.0]


def test_out_of_order_within_the_open_window_is_not_late() -> None:
    wm = manager(kind="time", duration_s=10.0)
    feed(wm, [rec(0, ts=15.0), rec(1, ts=11.0)])
    assert wm.late_records == 0


def test_tick_closes_a_quiet_time_window_after_the_grace_period() -> None:
    now = [0.0]
    wm = windows.WindowManager(
        settings.WindowSettings(kind="time", duration_s=10.0), SCHEMA, clock=lambda: now[0], grace_s=5.0
    )
    feed(wm, [rec(0, ts=1.0), rec(1, ts=2.0)])
    now[0] = 14.9
    assert wm.tick() == []
    now[0] = 15.0
    closed = wm.tick()
    assert [stamps(w) for w in closed] == [[1.0, 2.0]]
    assert wm.tick() == []
    assert manager(size=10).tick() == []


def test_time_windows_keep_a_bounded_sample() -> None:
    wm = windows.WindowManager(
        settings.WindowSettings(kind="time", duration_s=1000.0),
        SCHEMA,
        clock=lambda: 0.0,
        max_time_window_records=50,
    )
    feed(wm, [rec(i, ts=float(i) / 10) for i in range(500)])
    assert wm.fill() == {("1", ()): 50}
    assert wm.sampled_out == 450
    window = wm.flush()[0]
    assert window.size == 50
    # A uniform sample spreads over the window rather than keeping only the first records.
    assert max(xs(window)) > 250


# -- window content -----------------------------------------------------------------------------------


def test_labels_column_when_labels_are_given() -> None:
    wm = manager(size=10)
    closed: list[Any] = []
    for i in range(10):
        closed += wm.add(rec(i), i, label=None if i == 0 else float(i % 2))
    labels = closed[0].labels
    assert labels is not None and labels.dtype == np.float64
    assert math.isnan(labels[0]) and list(labels[1:]) == [float(i % 2) for i in range(1, 10)]
    plain = feed(manager(size=10), [rec(i) for i in range(10)])
    assert plain[0].labels is None


def test_unknown_features_are_counted() -> None:
    wm = manager(size=10)
    items = [rec(i) for i in range(10)]
    items[3] = records.PredictionRecord("r", 3.0, "m", "1", {"x": 1.0, "colour": "red", "new": 5}, 1.0)
    closed = feed(wm, items)
    assert wm.column_stats.unknown_features == 1
    assert "new" not in closed[0].features


def test_late_record_in_a_sliding_window_is_emitted_once() -> None:
    wm = manager(kind="time", duration_s=10.0, slide_s=5.0)
    closed = feed(wm, [rec(0, ts=1.0), rec(1, ts=6.0), rec(2, ts=12.0), rec(3, ts=2.0), rec(4, ts=16.0)])
    closed += wm.flush()
    assert wm.late_records == 1
    assert [xs(w) for w in closed] == [[0.0], [0.0, 1.0], [1.0, 2.0, 3.0], [2.0, 4.0]]


def test_a_backlog_of_old_records_is_windowed_by_event_time_not_cut_by_the_clock() -> None:
    # A consumer catching up: records an hour old arrive without pause while the clock ticks.
    now = [3600.0]
    wm = windows.WindowManager(
        settings.WindowSettings(kind="time", duration_s=10.0), SCHEMA, clock=lambda: now[0], grace_s=5.0
    )
    closed: list[Any] = []
    for i in range(100):
        now[0] += 0.01
        closed += wm.add(rec(i, ts=float(i)), i)
        closed += wm.tick()
    # Event time closes the windows up to the newest record; none is cut short by the clock.
    assert [len(xs(w)) for w in closed] == [10] * 9
    # The backlog ends and the key goes quiet: after grace_s the last window closes too.
    now[0] += 4.9
    assert wm.tick() == []
    now[0] += 0.2
    assert [len(xs(w)) for w in wm.tick()] == [10]

"""Fuzz tests of ``WindowManager``: any stream of valid records is windowed without an exception,
within its memory bounds.

Records are any the parser may let through (``records.PredictionRecord``): arbitrary model
versions and segments, event times anywhere in the accepted range (in order, out of order, late,
far apart), features of mixed types (None, str, bool, int up to float64's range, float), numeric
strings such as ``"1e999"`` in numeric columns, string and numeric predictions and labels. They are
fed to count (tumbling, sliding) and time (tumbling, sliding) windows under arbitrary settings,
between ``advance``, ``tick`` and clock moves. What is proved:

- ``add`` / ``advance`` / ``tick`` / ``flush`` / ``state`` + ``restore`` never raise;
- open windows never exceed ``max_open_windows``; a key never buffers more than ``size`` records
  (count) or ``max_time_window_records`` (time), and no closed window is larger;
- ``flush`` leaves nothing buffered;
- a time window whose slide would vanish in float rounding is refused when the manager is built
  (it made closing loop forever).
"""

from __future__ import annotations

from typing import Any, Final

import hypothesis
import pytest
from hypothesis import strategies as st

from agent import settings
from agent.ingest import records
from agent.pipeline import reference, windows
from detectors import window as window_mod
from tests.unit.fuzz.common import FUZZ, MAX_FLOAT, texts

SCHEMA: Final = reference.FeatureSchema(("x", "colour", "flag"), ("numeric", "categorical", "numeric"))
SEGMENT_ATTRIBUTES: Final = ("region", "tier")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# -- strategies ---------------------------------------------------------------------------------

non_empty_texts: Final = texts.filter(bool)
finite_floats: Final = st.floats(allow_nan=False, allow_infinity=False)
feature_values: Final = st.one_of(
    st.none(),
    st.booleans(),
    finite_floats,
    st.integers(min_value=-int(MAX_FLOAT), max_value=int(MAX_FLOAT)),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(["1.5", "inf", "-1e999", "nan", "red", ""]),
    texts,
)
features: Final = st.dictionaries(
    st.sampled_from([*SCHEMA.names, "unknown"]) | texts, feature_values, max_size=5
)
segments: Final = st.none() | st.dictionaries(
    st.sampled_from(SEGMENT_ATTRIBUTES) | texts, st.sampled_from(["eu", "us", ""]) | texts, max_size=3
)
labels: Final = st.none() | finite_floats | st.integers(min_value=-(2**63), max_value=2**63) | texts


@st.composite
def window_settings(draw: st.DrawFn) -> settings.WindowSettings:
    segment_by = draw(st.lists(st.sampled_from(SEGMENT_ATTRIBUTES) | texts, max_size=2, unique=True))
    max_open = draw(st.integers(min_value=1, max_value=4))
    if draw(st.booleans()):
        size = draw(st.integers(min_value=10, max_value=25))
        slide = draw(st.none() | st.integers(min_value=1, max_value=size))
        return settings.WindowSettings(
            kind="count", size=size, slide=slide, segment_by=segment_by, max_open_windows=max_open
        )
    duration = draw(st.sampled_from([0.001, 0.5, 1.0, 10.0, 300.0, 86_400.0]) | st.floats(0.001, 10_000.0))
    # A few slides per window: the closing loop steps once per slide within a window's span.
    slide_s = draw(st.none() | st.integers(min_value=1, max_value=8).map(lambda k: max(duration / k, 0.001)))
    return settings.WindowSettings(
        kind="time",
        duration_s=duration,
        slide_s=slide_s,
        segment_by=segment_by,
        max_open_windows=max_open,
    )


@st.composite
def timestamps(draw: st.DrawFn, count: int) -> list[float]:
    """Event times that mostly move forward by small steps, sometimes back (late records) and
    sometimes jump anywhere in [0, MAX_EPOCH_SECONDS)."""
    anywhere = st.floats(min_value=0.0, max_value=records.MAX_EPOCH_SECONDS, exclude_max=True)
    now = draw(anywhere | st.sampled_from([0.0, 1_714_564_800.0, records.MAX_EPOCH_SECONDS - 1.0]))
    out = []
    for _ in range(count):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            now = draw(anywhere)
        else:
            now = min(max(now + draw(st.floats(min_value=-30.0, max_value=120.0)), 0.0), 9.99e10)
        out.append(now)
    return out


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[records.PredictionRecord, Any]]:
    """Records with the label each comes with (None mostly)."""
    count = draw(st.integers(min_value=0, max_value=40))
    versions = draw(st.lists(st.sampled_from(["1", "2", "3"]) | non_empty_texts, min_size=1, max_size=4))
    stream = []
    for i, timestamp in enumerate(draw(timestamps(count))):
        record = records.PredictionRecord(
            request_id=f"r-{i}",
            timestamp=timestamp,
            model_name="m",
            model_version=draw(st.sampled_from(versions)),
            features=draw(features),
            prediction=draw(finite_floats | st.integers(min_value=-(2**63), max_value=2**63) | texts),
            confidence=draw(st.none() | st.floats(min_value=0.0, max_value=1.0)),
            latency_ms=draw(st.none() | st.floats(min_value=0.0, max_value=1e6)),
            status=draw(st.sampled_from(["ok", "error"])),
            segment=draw(segments),
        )
        stream.append((record, draw(labels) if draw(st.integers(0, 3)) == 0 else None))
    return stream


# Between records: nothing, the watermark every input reached, or the clock moves and ``tick``.
steps: Final = st.lists(st.sampled_from(["add", "add", "add", "advance", "tick"]), min_size=40, max_size=40)


# -- checks -------------------------------------------------------------------------------------


def check_bounds(wm: windows.WindowManager, config: settings.WindowSettings, cap: int) -> None:
    fill = wm.fill()
    assert len(fill) <= config.max_open_windows, fill
    limit = config.size if config.kind == "count" else cap
    assert all(count <= limit for count in fill.values()), fill


def check_closed(closed: list[window_mod.Window], config: settings.WindowSettings, cap: int) -> int:
    """The records the closed windows hold, each window within its bound."""
    for window in closed:
        assert isinstance(window, window_mod.Window)
        if config.kind == "count":
            assert 1 <= window.size <= config.size, window.size
        else:
            assert 1 <= window.size <= cap, window.size
    return sum(window.size for window in closed)


# -- the tests ----------------------------------------------------------------------------------


@hypothesis.settings(FUZZ, max_examples=60)
@hypothesis.given(
    config=window_settings(),
    stream=streams(),
    plan=steps,
    cap=st.integers(min_value=1, max_value=20),
    lateness=st.sampled_from([0.0, 5.0, 3600.0]),
)
def test_any_record_stream_is_windowed_within_bounds(
    config: settings.WindowSettings,
    stream: list[tuple[records.PredictionRecord, Any]],
    plan: list[str],
    cap: int,
    lateness: float,
) -> None:
    clock = Clock()
    wm = windows.WindowManager(
        config, SCHEMA, clock=clock, grace_s=5.0, allowed_lateness_s=lateness, max_time_window_records=cap
    )
    watermark = 0.0
    windowed = 0  # records in the windows closed
    for index, (record, label) in enumerate(stream):
        windowed += check_closed(wm.add(record, index, label), config, cap)
        check_bounds(wm, config, cap)
        step = plan[index]
        if step == "advance":
            watermark = max(watermark, record.timestamp - 10.0)
            windowed += check_closed(wm.advance(watermark), config, cap)
        elif step == "tick":
            clock.now += 60.0
            windowed += check_closed(wm.tick(), config, cap)
        check_bounds(wm, config, cap)
        segment = wm.segment_of(record)
        assert segment is None or set(segment) == set(config.segment_by)

    # A restarted evaluator resumes from the state with the same buffers.
    resumed = windows.WindowManager(config, SCHEMA, clock=clock, max_time_window_records=cap)
    resumed.restore(wm.state())
    assert resumed.fill() == wm.fill()

    # ``--hypothesis-show-statistics`` shows which paths the streams took.
    for counter in ("windows_closed", "evicted_windows", "late_records", "sampled_out"):
        hypothesis.event(f"{config.kind} {counter}", "yes" if getattr(wm, counter) else "no")

    windowed += check_closed(wm.flush(), config, cap)
    assert wm.fill() == {}
    if config.slide is None and config.slide_s is None:
        # Tumbling: every record left in exactly one window, or is counted as dropped for memory
        # (evicted with its key, or sampled out of a full time window): none is lost silently.
        assert windowed + wm.evicted_records + wm.sampled_out == len(stream)


@hypothesis.settings(FUZZ, max_examples=50)
@hypothesis.given(
    duration=st.floats(min_value=1e-12, max_value=windows.MIN_SLIDE_S, exclude_max=True),
    timestamp=st.floats(min_value=1e9, max_value=records.MAX_EPOCH_SECONDS, exclude_max=True),
)
# Closing looped forever before the fix: 5e10 + 1e-9 == 5e10, so the window's end never moved.
@hypothesis.example(duration=1e-9, timestamp=5e10)
def test_a_slide_lost_in_float_rounding_is_refused(duration: float, timestamp: float) -> None:
    config = settings.WindowSettings(kind="time", duration_s=duration)
    with pytest.raises(ValueError, match=r"window\.duration_s .* at least"):
        windows.WindowManager(config, SCHEMA)
    sliding = settings.WindowSettings(kind="time", duration_s=10.0, slide_s=duration)
    with pytest.raises(ValueError, match=r"window\.slide_s .* at least"):
        windows.WindowManager(sliding, SCHEMA)
    # The smallest slide accepted moves a window's end even at the top of the accepted range.
    assert timestamp + windows.MIN_SLIDE_S > timestamp
    smallest = windows.WindowManager(
        settings.WindowSettings(kind="time", duration_s=windows.MIN_SLIDE_S), SCHEMA
    )
    record = records.PredictionRecord("r", timestamp, "m", "1", {"x": 1.0}, 1.0)
    assert smallest.add(record, 0) == []
    assert len(smallest.advance(timestamp + 1.0)) == 1

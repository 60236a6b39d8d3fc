"""Library loggers stay quiet below their level and do not repeat themselves; ours are untouched."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.observability import errors
from agent.runtime import log_format


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_library_lines_below_their_level_are_dropped_ours_never() -> None:
    keep = log_format.LibraryLevel(logging.WARNING)
    assert not keep.filter(_record("kafka.net.connection", logging.INFO, "connecting"))
    assert keep.filter(_record("kafka.net.connection", logging.ERROR, "connection refused"))
    assert keep.filter(_record("agent.ingest.source", logging.INFO, "assigned partitions"))


def test_a_repeated_library_line_passes_once_per_interval_with_a_count() -> None:
    now = [0.0]
    limit = log_format.RepeatLimit(60.0, clock=lambda: now[0])
    passed = []
    for second in range(0, 130, 2):  # a refused connection every 2 s for 130 s
        now[0] = float(second)
        record = _record("kafka.net.manager", logging.ERROR, "Connection failed: %s")
        if limit.filter(record):
            passed.append((second, record.msg))
    assert [second for second, _ in passed] == [0, 60, 120]
    assert passed[1][1] == "Connection failed: %s (and 29 more like it in the last 60s)"
    # The agent's own lines are never held back.
    assert all(limit.filter(_record("agent.runtime.sidecar", logging.WARNING, "x")) for _ in range(3))


def test_configured_handler_applies_both(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        log_format.configure_logging(settings_mod.LoggingSettings(json_format=False))
        logging.getLogger("kafka.conn").info("noise")
        logging.getLogger("agent.test").info("ours")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "ours" in stream.getvalue() and "noise" not in stream.getvalue()


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            kafka_errors.KafkaTimeoutError("Failed to update metadata"),
            "KafkaTimeoutError: Failed to update metadata",
        ),
        (ValueError("bad"), "ValueError: bad"),
        (TimeoutError(), "TimeoutError"),
    ],
)
def test_an_error_names_its_type_once(exc: BaseException, text: str) -> None:
    assert errors.describe(exc) == text

"""Log output: one JSON object per line for log shippers, or plain text for people.

The agent's own loggers log at ``logging.level``; the libraries' (kafka-python retries a broker
that is down several times a second) at ``logging.libraries_level``, and a library line that
repeats within ``logging.repeat_interval_s`` is held back, counted, and the count said with the
next one that passes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

from agent.settings import groups


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# Loggers of this project; every other logger is a library's.
OWN_LOGGERS = ("agent", "actions", "detectors", "demo", "drift_logger", "__main__")


def _own(name: str) -> bool:
    return name.split(".", 1)[0] in OWN_LOGGERS


class LibraryLevel(logging.Filter):
    """Drops library records below ``level``; the agent's own pass at the root's level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return _own(record.name) or record.levelno >= self.level


class RepeatLimit(logging.Filter):
    """A library line (same logger, level and message template) at most once per ``interval_s``."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if _own(record.name) or self.interval_s <= 0:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        since = now - self._last.get(key, -float("inf"))
        if since < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {since:.0f}s)"
        return True


def configure_logging(config: groups.LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(LibraryLevel(logging.getLevelName(config.libraries_level)))
    handler.addFilter(RepeatLimit(config.repeat_interval_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)

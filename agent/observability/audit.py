"""The audit log: one JSON line per decision, action and override change, append-only.

Every line has ``time`` (epoch s), ``kind`` and the facts behind it: the detector results that
went in, the rule that fired, the overrides in force, the idempotency key and the outcome.
Lines are written (and flushed to the OS) at once; ``flush()`` fsyncs, and the loop calls it
before it commits Kafka offsets. A copy of each line can go to a Kafka topic through a plain
``Callable[[bytes], None]`` sink, so this module never imports Kafka.

Secrets never reach the log: values under keys named like token/password/secret/routing_key/
webhook_url (and a few more, see ``SECRET_KEY_PATTERN``) are replaced with ``<redacted>``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

LOG = logging.getLogger(__name__)

REDACTED = "<redacted>"
SECRET_KEY_PATTERN = re.compile(
    r"token|password|passwd|secret|routing_key|webhook_url|api_key|apikey|authorization|credential|private_key",
    re.IGNORECASE,
)

# Entry kinds written by the agent; readers must tolerate others (newer agents may add kinds).
DECISION = "decision"
ACTION = "action"
OVERRIDE_CHANGE = "override_change"
OVERRIDE_REJECTED = "override_rejected"
ACTION_DROPPED = "action_dropped"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named key's value replaced; lists and dicts recursed."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if SECRET_KEY_PATTERN.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _encode(value: Any) -> Any:
    """Strict JSON: NaN/inf spelled out as strings, unknown objects as their str()."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    return value


class AuditLog:
    """Thread-safe appender. ``path=None`` keeps only the sink (used by replay into a buffer)."""

    def __init__(
        self,
        path: pathlib.Path | None,
        *,
        sink: Callable[[bytes], None] | None = None,
        clock: Callable[[], float] = time.time,
        fsync_every_entry: bool = False,
    ) -> None:
        self._path = path
        self._sink = sink
        self._clock = clock
        self._fsync_every_entry = fsync_every_entry
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None
        self.sink_failures = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    @property
    def path(self) -> pathlib.Path | None:
        return self._path

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one entry; returns it as written (redacted). Never raises on a sink failure."""
        entry: dict[str, Any] = {"time": self._clock(), "kind": kind}
        entry.update(fields)
        entry = _encode(redact(entry))
        line = json.dumps(entry, sort_keys=True, default=str, allow_nan=False)
        with self._lock:
            if self._handle is not None:
                self._handle.write(line + "\n")
                self._handle.flush()
                if self._fsync_every_entry:
                    os.fsync(self._handle.fileno())
            if self._sink is not None:
                try:
                    self._sink(line.encode("utf-8"))
                except Exception as exc:  # a broken audit topic must not stop decisions
                    self.sink_failures += 1
                    LOG.warning("audit sink failed (%s); the file copy is kept", type(exc).__name__)
        return entry

    def flush(self) -> None:
        """Make every line written so far durable (fsync)."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_entries(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Parsed entries of an audit file; unreadable lines come back as ``{"kind": "unreadable"}``."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield parse_line(line, number)


def parse_line(line: str, number: int) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError:
        return {"kind": "unreadable", "line": number, "text": line.strip()[:200]}
    if not isinstance(entry, dict):
        return {"kind": "unreadable", "line": number, "text": line.strip()[:200]}
    return entry

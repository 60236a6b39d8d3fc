"""A file-backed idempotency store: every action key is recorded before and after it runs.

The executor calls ``begin`` before it hands a request to its handler and ``finish`` after.
After a crash, a key with a ``begin`` but no final ``finish`` is "pending": the executor hands
it to the handler again with ``resume`` information so the handler confirms or completes the
action instead of repeating it. A key whose outcome was ``in_progress`` stays pending too (the
handler returned before the action was confirmed, e.g. a rollout still progressing).

Storage is one JSON object per line, appended and fsynced, so a torn last line (power loss
mid-write) costs at most that one line; it is skipped with a warning on load.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from actions import base

LOG = logging.getLogger(__name__)

_FINAL_STATUSES = frozenset(
    {base.OutcomeStatus.SUCCEEDED.value, base.OutcomeStatus.FAILED.value, base.OutcomeStatus.SKIPPED.value}
)


@dataclasses.dataclass(frozen=True)
class IdempotencyRecord:
    """What is known about one key: the request it began with and, once known, its outcome."""

    key: str
    request: Mapping[str, Any]
    begun_at: float
    attempts: int = 1
    outcome: Mapping[str, Any] | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        """True once a final outcome (not in_progress) is recorded: the action must not run again."""
        return self.outcome is not None and self.outcome.get("status") in _FINAL_STATUSES

    def outcome_object(self) -> base.ActionOutcome | None:
        if self.outcome is None:
            return None
        return outcome_from_json(self.outcome)


class IdempotencyStore(Protocol):
    """What the executor needs; handlers in ``actions`` may accept the same shape."""

    def begin(self, key: str, request: base.ActionRequest) -> IdempotencyRecord | None: ...

    def finish(self, key: str, outcome: base.ActionOutcome) -> None: ...

    def get(self, key: str) -> IdempotencyRecord | None: ...

    def pending(self) -> list[IdempotencyRecord]: ...


def request_to_json(request: base.ActionRequest) -> dict[str, Any]:
    return {
        "kind": request.kind.value,
        "model_name": request.model_name,
        "idempotency_key": request.idempotency_key,
        "incident_id": request.incident_id,
        "severity": request.severity,
        "reason": request.reason,
        "model_version": request.model_version,
        "params": _jsonable(dict(request.params)),
    }


def request_from_json(data: Mapping[str, Any]) -> base.ActionRequest:
    return base.ActionRequest(
        kind=base.ActionKind(data["kind"]),
        model_name=str(data["model_name"]),
        idempotency_key=str(data["idempotency_key"]),
        incident_id=str(data["incident_id"]),
        severity=str(data["severity"]),
        reason=str(data["reason"]),
        model_version=data.get("model_version"),
        params=dict(data.get("params") or {}),
    )


def outcome_to_json(outcome: base.ActionOutcome) -> dict[str, Any]:
    return {
        "status": outcome.status.value,
        "message": outcome.message,
        "details": _jsonable(dict(outcome.details)),
    }


def outcome_from_json(data: Mapping[str, Any]) -> base.ActionOutcome:
    return base.ActionOutcome(
        status=base.OutcomeStatus(data["status"]),
        message=str(data.get("message", "")),
        details=dict(data.get("details") or {}),
    )


def _jsonable(value: Any) -> Any:
    # Round-trip through json with str() as the fallback so odd param values never break a write.
    return json.loads(json.dumps(value, default=str, allow_nan=True))


class _JournalStore:
    """``begin``/``finish``/``get``/``pending`` over records in memory; subclasses persist each change."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, IdempotencyRecord] = {}

    def _persist(self, record: IdempotencyRecord, op: str) -> None:
        raise NotImplementedError

    def begin(self, key: str, request: base.ActionRequest) -> IdempotencyRecord | None:
        """Record that ``key`` is about to run. Returns what was known about it before, if anything."""
        with self._lock:
            previous = self._records.get(key)
            if previous is not None and previous.done:
                return previous
            record = IdempotencyRecord(
                key=key,
                request=request_to_json(request),
                begun_at=self._clock() if previous is None else previous.begun_at,
                attempts=1 if previous is None else previous.attempts + 1,
                outcome=None if previous is None else previous.outcome,
            )
            self._persist(record, "begin")
            self._records[key] = record
            return previous

    def finish(self, key: str, outcome: base.ActionOutcome) -> None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                raise KeyError(f"finish({key!r}) without begin: the executor must call begin first")
            finished = dataclasses.replace(
                record, outcome=outcome_to_json(outcome), finished_at=self._clock()
            )
            self._persist(finished, "finish")
            self._records[key] = finished

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._records.get(key)

    def pending(self) -> list[IdempotencyRecord]:
        """Keys begun and not finished for good, oldest first: the executor resumes these."""
        with self._lock:
            return sorted((r for r in self._records.values() if not r.done), key=lambda r: r.begun_at)


class FileIdempotencyStore(_JournalStore):
    """JSONL store under the agent's state directory; thread-safe; fsync after every line."""

    def __init__(self, path: pathlib.Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()

    @property
    def path(self) -> pathlib.Path:
        return self._path

    def _persist(self, record: IdempotencyRecord, op: str) -> None:
        if op == "begin":
            self._append({"op": "begin", "key": record.key, "at": self._clock(), "request": record.request})
        else:
            self._append(
                {"op": "finish", "key": record.key, "at": record.finished_at, "outcome": record.outcome}
            )

    def _append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _load(self) -> None:
        if not self._path.exists():
            return
        with self._path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                self._load_line(line, number)

    def _load_line(self, line: str, number: int) -> None:
        if not line.strip():
            return
        try:
            entry = json.loads(line)
            key = str(entry["key"])
            if entry["op"] == "begin":
                previous = self._records.get(key)
                self._records[key] = IdempotencyRecord(
                    key=key,
                    request=entry["request"],
                    begun_at=float(entry["at"]) if previous is None else previous.begun_at,
                    attempts=1 if previous is None else previous.attempts + 1,
                    outcome=None if previous is None else previous.outcome,
                )
            elif entry["op"] == "finish" and key in self._records:
                self._records[key] = dataclasses.replace(
                    self._records[key], outcome=entry["outcome"], finished_at=float(entry["at"])
                )
        except (ValueError, KeyError, TypeError) as exc:
            # A torn final line after a crash is expected; anything else is still not worth dying for.
            LOG.warning("idempotency store %s: skipping unreadable line %d (%s)", self._path, number, exc)


def record_to_json(record: IdempotencyRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def record_from_json(data: Mapping[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=str(data["key"]),
        request=dict(data["request"]),
        begun_at=float(data["begun_at"]),
        attempts=int(data.get("attempts", 1)),
        outcome=dict(data["outcome"]) if data.get("outcome") is not None else None,
        finished_at=float(data["finished_at"]) if data.get("finished_at") is not None else None,
    )


class TableIdempotencyStore(_JournalStore):
    """The journal in a compacted topic, keyed by idempotency key: shared by every agent.

    Each write is the key's whole record (so compaction keeps what matters) and is flushed to
    the broker (acks=all) before ``begin`` or ``finish`` returns: the side effect starts only
    once its intent is durable, and an executor on another pod sees it after a failover.
    """

    def __init__(self, table: Any, *, clock: Callable[[], float] = time.time, partition: int = 0) -> None:
        super().__init__(clock=clock)
        self._table = table
        self._partition = partition

    def load(self) -> int:
        """Read the journal (call when this agent becomes the executor); the number of keys back."""
        loaded: dict[str, IdempotencyRecord] = {}
        for key, versions in self._table.read([self._partition]).items():
            try:
                loaded[key.decode("utf-8")] = record_from_json(json.loads(versions[-1]))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                LOG.warning("journal: skipping unreadable record for key %r (%s)", key[:80], exc)
        with self._lock:
            self._records = loaded
        return len(loaded)

    def _persist(self, record: IdempotencyRecord, op: str) -> None:
        value = json.dumps(record_to_json(record), sort_keys=True, default=str).encode("utf-8")
        self._table.put(record.key.encode("utf-8"), value, self._partition)
        self._table.flush()

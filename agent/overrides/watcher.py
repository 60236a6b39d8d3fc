"""Hot reload of the override file: re-read within seconds, every change and rejection audited.

An invalid file is rejected with an error naming the field; the previous valid overrides stay
in force (a typo during an incident must not drop the mutes and freezes already in place) and
the rejection is audited. Every accepted change is audited as a diff, and so is every entry
that expires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any

import prometheus_client

from agent.observability import audit as audit_mod
from agent.overrides.schema import OverrideError, _dump, _sections, diff, parse
from agent.overrides.state import OverrideState

LOG = logging.getLogger(__name__)


class OverrideWatcher:
    """Re-reads the override file; ``poll()`` now, ``maybe_poll()`` when the interval has passed.

    The content hash decides whether anything changed (mtime alone misses same-second edits and
    ConfigMap symlink swaps). ``start()`` runs ``poll`` in a daemon thread every interval.
    """

    def __init__(
        self,
        path: pathlib.Path,
        *,
        audit: audit_mod.AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._path = path
        self._audit = audit
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._state = OverrideState()
        self._last_poll: float | None = None
        self._rejected_hash: str | None = None
        self._active_keys: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._failures: prometheus_client.Counter | None = None
        if registry is not None:
            self._failures = prometheus_client.Counter(
                "drift_agent_override_reload_failures",
                "Override file versions rejected as invalid (the previous one stays in force).",
                registry=registry,
            )

    @property
    def state(self) -> OverrideState:
        with self._lock:
            return self._state

    def maybe_poll(self) -> bool:
        now = self._clock()
        if self._last_poll is not None and now - self._last_poll < self._interval_s:
            return False
        return self.poll()

    def poll(self) -> bool:
        """Read the file now; returns True when the overrides in force changed."""
        now = self._clock()
        self._last_poll = now
        changed = self._reload(now)
        self._audit_expiries(now)
        return changed

    def _reload(self, now: float) -> bool:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            self._reject(f"cannot read override file {self._path}: {exc.strerror}", None)
            return False
        digest = hashlib.sha256(raw).hexdigest()
        current = self.state
        if digest in (current.content_hash, self._rejected_hash):
            return False
        try:
            parsed = parse(raw.decode("utf-8", errors="replace"), str(self._path))
        except OverrideError as exc:
            self._reject(str(exc), digest)
            return False
        new_state = OverrideState(file=parsed, content_hash=digest, source=str(self._path))
        changes = diff(current.file, parsed)
        with self._lock:
            self._state = new_state
        self._rejected_hash = None
        self.last_error = None
        if changes and self._audit is not None:
            self._audit.record(
                audit_mod.OVERRIDE_CHANGE, path=str(self._path), sha256=digest, changes=changes
            )
        if changes:
            LOG.info("override file %s changed: %s", self._path, ", ".join(sorted(changes)))
        return bool(changes)

    def _reject(self, error: str, digest: str | None) -> None:
        self._rejected_hash = digest
        self.last_error = error
        LOG.error("%s. The previous overrides stay in force until the file is fixed", error)
        if self._failures is not None:
            self._failures.inc()
        if self._audit is not None:
            self._audit.record(audit_mod.OVERRIDE_REJECTED, path=str(self._path), error=error)

    def _audit_expiries(self, now: float) -> None:
        active: set[str] = set()
        expired: dict[str, list[dict[str, Any]]] = {}
        for section, entries in _sections(self.state.file).items():
            for entry in entries:
                key = section + json.dumps(_dump(entry), sort_keys=True)
                if entry.active(now):
                    active.add(key)
                elif key in self._active_keys:
                    expired.setdefault(section, []).append(_dump(entry))
        self._active_keys = active
        if expired and self._audit is not None:
            self._audit.record(audit_mod.OVERRIDE_CHANGE, path=str(self._path), changes={"expired": expired})

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="override-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a watcher bug must not silently end hot reload
                LOG.exception("override watcher poll failed; retrying")
            self._stop.wait(self._interval_s)

"""Liveness from heartbeats: each loop that must keep turning beats; a silent one fails /healthz.

A loop stuck in a call that never returns (a hung broker client, an API server that holds the
connection open) leaves the process up but useless; Kubernetes restarts it only when the
liveness probe says so. A part is expected from its first beat on (start-up takes what it
takes) until it says it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Heartbeats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, float]] = {}  # name -> (last beat, longest silence allowed)

    def beat(self, name: str, max_silence_s: float) -> None:
        with self._lock:
            self._last[name] = (self._clock(), max_silence_s)

    def stopped(self, name: str) -> None:
        """``name`` no longer runs on purpose (e.g. the elector of an agent that is not a candidate)."""
        with self._lock:
            self._last.pop(name, None)

    def stalled(self) -> list[tuple[str, float]]:
        """(name, seconds silent) of every part silent for longer than it may be."""
        now = self._clock()
        with self._lock:
            return [
                (name, now - last) for name, (last, allowed) in self._last.items() if now - last > allowed
            ]

    def alive(self) -> bool:
        return not self.stalled()

    def reason(self) -> str:
        stalled = self.stalled()
        if not stalled:
            return "ok"
        return "stalled: " + ", ".join(f"{name} silent for {silent:.0f} s" for name, silent in stalled)

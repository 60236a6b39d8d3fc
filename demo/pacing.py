"""The serving side's background loops: a paced ticker and ground truth that arrives later.

The demo's simulated model server (``demo.server``) and the e2e tests' traffic generator and
kubelet stand-ins (``tests/e2e``) all run one step at a steady cadence in a daemon thread, and
both traffic sources send each label a little after its prediction, as ground truth arrives in
real life. The tests import this module; it never imports them.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable


class Ticker:
    """Calls ``tick`` every ``interval_s`` in a daemon thread, from ``start()`` until ``stop()``.

    The first tick runs at once. Ticks are paced from the start, not from the end of the previous
    one, so a steady rate holds; a tick that ends late is followed by the next at once and the
    pace restarts from there: a busy machine serves less, never in a burst to catch up.
    """

    def __init__(self, name: str, tick: Callable[[], None], interval_s: float) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._tick()
            next_at += self._interval_s
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()


class DelayedLabels:
    """Labels held back ``delay_s`` after their prediction, then handed to ``send`` as JSON bytes.

    The record is what the agent joins to a prediction by request id. Fed and drained by one
    thread (the one serving): no lock.
    """

    def __init__(self, delay_s: float, send: Callable[[bytes], object]) -> None:
        self._delay_s = delay_s
        self._send = send
        self._pending: collections.deque[tuple[float, bytes]] = collections.deque()

    def add(self, request_id: str, label: int, timestamp: float) -> None:
        record = json.dumps({"request_id": request_id, "timestamp": timestamp, "label": label}).encode()
        self._pending.append((time.monotonic() + self._delay_s, record))

    def send_due(self) -> int:
        """Send every label whose delay is over; returns how many."""
        now = time.monotonic()
        sent = 0
        while self._pending and self._pending[0][0] <= now:
            self._send(self._pending.popleft()[1])
            sent += 1
        return sent

"""GPU-side timing of one request with CUDA events, and a CPU stand-in with the same surface.

A ``GpuSpan`` records a start event before the model call and an end event after it, both on
the current CUDA stream. The elapsed time is read later, on the logger's sender thread:
``end.synchronize()`` waits for that one event only (never ``torch.cuda.synchronize()`` on the
whole device), so the request thread never waits on the GPU because of the logger.

torch is optional: it is looked up in ``sys.modules`` (a server that uses CUDA has imported it
already) and never imported by this module.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol


class TimingEvent(Protocol):
    """The part of ``torch.cuda.Event`` the logger uses."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end_event: Any) -> float: ...


EventFactory = Callable[[], TimingEvent]


class PerfCounterEvent:
    """A host-clock event: ``record`` reads ``perf_counter``; ``elapsed_time`` is in ms.

    It lets the timing path (record, hand over, synchronize, read) run and be tested on a
    machine without a GPU; it is never used for ``gpu_latency_ms`` unless passed in explicitly.
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self._timer = timer
        self.recorded_at: float | None = None
        self.synchronized = False

    def record(self) -> None:
        self.recorded_at = self._timer()

    def synchronize(self) -> None:
        self.synchronized = True

    def elapsed_time(self, end_event: Any) -> float:
        end_at = getattr(end_event, "recorded_at", None)
        if self.recorded_at is None or end_at is None:
            # torch raises for an event that was never recorded; do the same.
            raise RuntimeError("both events must be recorded before elapsed_time")
        return (float(end_at) - self.recorded_at) * 1000.0


def cuda_event_factory() -> EventFactory | None:
    """``torch.cuda.Event(enable_timing=True)`` when torch is loaded and a CUDA device is usable."""
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
    except Exception:  # a broken driver install must not break the server's request path
        return None
    event_class = torch.cuda.Event

    def make() -> TimingEvent:
        event: TimingEvent = event_class(enable_timing=True)
        return event

    return make


def runs_on_cuda(inputs: object) -> bool | None:
    """True / False when ``inputs`` is a tensor (or a sequence/mapping of them); None if unknown."""
    if hasattr(inputs, "is_cuda"):
        return bool(inputs.is_cuda)
    if isinstance(inputs, list | tuple) and inputs:
        return runs_on_cuda(inputs[0])
    if isinstance(inputs, dict) and inputs:
        return runs_on_cuda(next(iter(inputs.values())))
    return None


@dataclasses.dataclass(slots=True)
class GpuSpan:
    """Start and end events around one model call; read once, on the sender thread."""

    start: TimingEvent
    end: TimingEvent

    def elapsed_ms(self) -> float | None:
        """Milliseconds between the events on the GPU, or None when they cannot be read."""
        try:
            self.end.synchronize()
            elapsed = float(self.start.elapsed_time(self.end))
        except Exception:  # e.g. the device was reset; the record is still worth sending
            return None
        return elapsed if elapsed >= 0.0 else None

"""Closed windows per version drive the canary's analysis, on a worker thread of its own.

The canary controller (``actions.canary``) knows nothing of Kafka or windows; this is the
adapter between it and the loop. The windows come from whichever agent evaluates the model
(``runtime.canary_sharing``); the canary ticks on the Lease holder only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from actions.canary import controller as canary_controller
from actions.canary import observe as canary_observe
from actions.canary import state as canary_state
from agent import overrides
from agent.observability import audit as audit_mod
from detectors import window as window_mod

log = logging.getLogger(__name__)


def command_from(control: overrides.CanaryControl | None) -> canary_state.Command | None:
    if control is None:
        return None
    return canary_state.Command(control.command, control.id)


class CanaryFeed:
    """Keeps the latest closed window of each version and ticks the canary with them.

    Ticks write to the target and the registry (slow I/O), so they run on one worker thread;
    when ticks pile up only the newest observations matter, so the queue holds one.
    """

    def __init__(
        self,
        controller: canary_controller.CanaryController,
        *,
        overrides_state: Callable[[], overrides.OverrideState],
        is_leader: Callable[[], bool],
        clock: Callable[[], float],
        audit: audit_mod.AuditLog | None = None,
    ) -> None:
        self.controller = controller
        self._audit = audit
        self._overrides = overrides_state
        self._is_leader = is_leader
        self._clock = clock
        self._latest: dict[str, window_mod.Window] = {}
        self._queue: queue.Queue[canary_state.Observations | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._work, name="canary-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._offer(None)
        self._thread.join(timeout=10)

    def observe(self, window: window_mod.Window) -> None:
        """A closed prediction window of some version of the model."""
        if window.model_version is None:
            return
        self._latest[window.model_version] = window
        if not self._is_leader():
            return
        state = self.controller.state()
        if state is None or state.finished:
            return
        canary = self._latest.get(state.candidate_version)
        if canary is None or not _newer_than(canary, state.ready_at):
            observations = canary_state.Observations(command=self._command(state.model_name))
        else:
            stable = self._latest.get(state.stable_version)
            observations = canary_observe.build_observations(
                canary,
                stable if stable is not None and _newer_than(stable, state.ready_at) else None,
                self.controller.config,
                command=self._command(state.model_name),
            )
        self._offer(observations)

    def _command(self, model: str) -> canary_state.Command | None:
        return command_from(self._overrides().canary_command(model, self._clock()))

    def _offer(self, item: canary_state.Observations | None) -> None:
        with contextlib.suppress(queue.Empty):  # drop the stale observation: only the newest counts
            self._queue.get_nowait()
        self._queue.put(item)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                result = self.controller.tick(item)
            except Exception:  # a failing tick must not end the ticker: the next one retries
                log.exception("canary tick failed")
                continue
            if result.error is not None:
                log.warning("canary tick: %s", result.error)
            if self._audit is not None and result.actions and result.state is not None:
                self._audit.record(
                    "canary",
                    canary_id=result.state.canary_id,
                    phase=result.state.phase.value,
                    percent=result.state.percent,
                    actions=[repr(action) for action in result.actions],
                )


def _newer_than(window: window_mod.Window, since: float | None) -> bool:
    """Whether the window holds traffic from after ``since`` (the split was served)."""
    if since is None:
        return False
    stamps = window.timestamps
    return stamps is not None and len(stamps) > 0 and float(stamps.min()) >= since

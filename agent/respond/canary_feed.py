"""Closed windows per version drive the canary's analysis, on a worker thread of its own.

The canary controller (``actions.canary``) knows nothing of Kafka or windows; this is the
adapter between it and the loop. The windows come from whichever agent evaluates the model
(``runtime.canary_sharing``); the canary ticks on the Lease holder only.
"""

from __future__ import annotations

import collections
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


# Rows kept per version and kind for one step's analysis; past it the oldest windows go (the
# statistics need hundreds to a few thousand rows, not more).
MAX_STEP_ROWS = 50_000


class StepWindows:
    """What each analysis judges: every window since the step's traffic was served, so an
    inconclusive check gets more data at every window.

    Prediction windows count from the step's start (its traffic share is what they measure). The
    label-joined ones hold records predicted earlier (labels come later), and a version's accuracy
    does not depend on its share, so they count over the whole canary, until an analysis fails
    (the next one must rest on fresh evidence). Either kind keeps its newest ``max_rows``.
    """

    def __init__(self, max_rows: int = MAX_STEP_ROWS) -> None:
        self._max_rows = max_rows
        self._keys: dict[bool, tuple[object, ...]] = {}
        self._windows: dict[tuple[str, bool], collections.deque[window_mod.Window]] = {}

    def follow(self, state: canary_state.CanaryState) -> None:
        """Forget what no longer counts: an earlier step's (or interval's) prediction windows, and
        the label-joined ones from before a failed analysis or of another canary."""
        for labelled, key in (
            (False, (state.canary_id, state.ready_at)),
            (True, (state.canary_id, state.failed_checks)),
        ):
            if self._keys.get(labelled) != key:
                self._keys[labelled] = key
                for stored in [k for k in self._windows if k[1] is labelled]:
                    del self._windows[stored]

    def add(self, window: window_mod.Window, *, labelled: bool, since: float | None) -> None:
        if window.model_version is None or (not labelled and not _newer_than(window, since)):
            return
        kept = self._windows.setdefault((window.model_version, labelled), collections.deque())
        kept.append(window)
        while sum(w.size for w in kept) > self._max_rows and len(kept) > 1:
            kept.popleft()

    def joined(self, version: str, *, labelled: bool) -> window_mod.Window | None:
        kept = self._windows.get((version, labelled))
        return window_mod.concat(list(kept)) if kept else None


class CanaryFeed:
    """Gathers each version's closed windows over the step and ticks the canary with them.

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
        labels_expected: bool = False,
    ) -> None:
        self.controller = controller
        self._audit = audit
        self._overrides = overrides_state
        self._is_leader = is_leader
        self._clock = clock
        self._labels_expected = labels_expected
        self._step = StepWindows()
        self._queue: queue.Queue[canary_state.Observations | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._work, name="canary-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._offer(None)
        self._thread.join(timeout=10)

    def observe(self, window: window_mod.Window, *, labelled: bool = False) -> None:
        """A closed window of some version of the model: every record, or the label-joined ones."""
        if window.model_version is None or not self._is_leader():
            return
        state = self.controller.state()
        if state is None or state.finished:
            return
        self._step.follow(state)
        self._step.add(window, labelled=labelled, since=state.ready_at)
        canary = self._step.joined(state.candidate_version, labelled=False)
        command = self._command(state.model_name)
        if canary is None:
            observations = canary_state.Observations(command=command)
        else:
            observations = canary_observe.build_observations(
                canary,
                self._step.joined(state.stable_version, labelled=False),
                self.controller.config,
                command=command,
                canary_labelled=self._step.joined(state.candidate_version, labelled=True),
                stable_labelled=self._step.joined(state.stable_version, labelled=True),
                labels_expected=self._labels_expected,
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

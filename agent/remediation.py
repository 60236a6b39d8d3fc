"""Retrain → canary, wired to the agent's data: recent labelled records feed the trainer, a
successful retrain starts a canary, and closed windows per version drive the canary's analysis.

The handlers themselves (actions.retrain, actions.canary) know nothing of Kafka or windows;
this module is the adapter between them and the loop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from actions import base as actions_base
from actions.canary import controller as canary_controller
from actions.canary import observe as canary_observe
from actions.canary import state as canary_state
from actions.retrain import dataset
from agent import audit as audit_mod
from agent import engine as engine_mod
from agent import labels, overrides
from detectors import window as window_mod

log = logging.getLogger(__name__)


class TrainingBuffer:
    """The most recent label-joined records, as training rows for a retrain (bounded)."""

    def __init__(self, max_rows: int) -> None:
        self._rows: collections.deque[dataset.TrainingRow] = collections.deque(maxlen=max_rows)
        self._lock = threading.Lock()

    def add(self, joined: labels.JoinedRecord) -> None:
        record = joined.record
        served_score = None
        if record.confidence is not None and isinstance(record.prediction, int | float):
            # Confidence is of the predicted class; the trainer wants the positive-class probability.
            served_score = record.confidence if record.prediction >= 0.5 else 1 - record.confidence
        row = dataset.TrainingRow(
            request_id=record.request_id,
            timestamp=record.timestamp,
            features=dict(record.features),
            label=joined.label,
            segment=dict(record.segment) if record.segment else None,
            served_prediction=record.prediction,
            served_score=served_score,
        )
        with self._lock:
            self._rows.append(row)

    def rows(self) -> list[dataset.TrainingRow]:
        with self._lock:
            return list(self._rows)


def canary_request(
    done_request: actions_base.ActionRequest, outcome: actions_base.ActionOutcome
) -> actions_base.ActionRequest | None:
    """The CANARY request that follows a successful retrain (None for anything else)."""
    if done_request.kind != actions_base.ActionKind.RETRAIN:
        return None
    if outcome.status != actions_base.OutcomeStatus.SUCCEEDED:
        return None
    candidate = outcome.details.get("candidate_version")
    if candidate is None:
        return None
    return actions_base.ActionRequest(
        kind=actions_base.ActionKind.CANARY,
        model_name=done_request.model_name,
        idempotency_key=f"{done_request.idempotency_key}/canary",
        incident_id=done_request.incident_id,
        severity=done_request.severity,
        reason=f"retrained version {candidate} passed its gates: canary",
        params={"candidate_version": str(candidate)},
    )


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

    def observe(self, evaluation: engine_mod.Evaluation) -> None:
        window = evaluation.window
        if evaluation.labelled or window.model_version is None:
            return
        self._latest[window.model_version] = window
        state = self.controller.state()
        if state is None or state.finished or not self._is_leader():
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

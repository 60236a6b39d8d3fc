"""What the demo story records as it runs: the injected events, the agent's evaluations and actions.

``demo.story`` fills these in; ``demo.ui`` shows them (the live table and the closing timeline).
They live apart from the story so that the view needs nothing from it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
from collections.abc import Callable

import numpy as np

from actions import base as actions_base
from agent.pipeline import engine as engine_mod
from agent.respond import executor
from demo import receiver as receiver_mod
from detectors import window as window_mod

WAIT_S = 60.0


@dataclasses.dataclass
class Event:
    """One injected change and what the agent did about it (wall-clock seconds)."""

    name: str
    description: str
    expected_action: str
    injected_at: float = 0.0
    injected_index: int = 0
    detected_at: float | None = None
    detected_index: int | None = None
    acted_at: float | None = None
    action_detail: str = ""
    recovered_at: float | None = None
    # When the story took its change back (the override file removed): what happens after it is no
    # longer the scenario's doing.
    lifted_at: float | None = None
    # Canary traffic percentages the server served for the candidate, in order.
    steps: list[int] = dataclasses.field(default_factory=list)
    passed: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    def since_injection(self, moment: float | None) -> str:
        return "-" if moment is None else f"{moment - self.injected_at:.1f}s"


@dataclasses.dataclass
class StoryResult:
    events: list[Event]
    # (wall-clock time it finished, the action and its outcome)
    actions: list[tuple[float, executor.Executed]]
    notifications: list[receiver_mod.Received]
    report_path: pathlib.Path | None
    metrics_url: str

    @property
    def passed(self) -> bool:
        return all(event.passed for event in self.events)


class Observer:
    """Collects what the agent evaluates and does, for the UI and the timeline."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.evaluations: list[tuple[float, engine_mod.Evaluation]] = []
        self.actions: list[tuple[float, executor.Executed]] = []
        self.windows = 0

    def on_evaluation(self, evaluation: engine_mod.Evaluation) -> None:
        with self.lock:
            self.windows += 1
            self.evaluations.append((time.time(), evaluation))
            del self.evaluations[:-400]
            self.lock.notify_all()

    def on_action(self, done: executor.Executed) -> None:
        with self.lock:
            self.actions.append((time.time(), done))
            self.lock.notify_all()

    def wait_for(self, predicate: Callable[[], object], timeout_s: float = WAIT_S) -> object:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                found = predicate()
                if found or time.monotonic() >= deadline:
                    return found
                self.lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))

    def first_drifted(
        self, family: str, after: float, feature: str | None = None
    ) -> tuple[float, engine_mod.Evaluation] | None:
        """The first window holding traffic served after ``after`` in which ``family`` drifted
        (on ``feature``, when one is named).

        A window the agent closes after the injection may still hold only older traffic when
        the agent runs behind: that one would be a false alarm, not a detection.
        """
        for at, evaluation in self.evaluations:
            if served_after(evaluation.window, after) and any(
                result.family.value == family
                and (
                    (result.drifted and feature in (None, result.feature))
                    or any(d.drifted and feature in (None, d.feature) for d in result.details)
                )
                for result in evaluation.results
            ):
                return at, evaluation
        return None

    def first_action(
        self, kind: actions_base.ActionKind, after: float, status: actions_base.OutcomeStatus | None = None
    ) -> tuple[float, executor.Executed] | None:
        for at, done in self.actions:
            if (
                at >= after
                and done.request.kind == kind
                and (status is None or done.outcome.status == status)
            ):
                return at, done
        return None

    def first_finished(
        self, kind: actions_base.ActionKind, after: float
    ) -> tuple[float, executor.Executed] | None:
        """The first outcome of ``kind`` that is not "still in progress"."""
        for at, done in self.actions:
            if (
                at >= after
                and done.request.kind == kind
                and done.outcome.status != actions_base.OutcomeStatus.IN_PROGRESS
            ):
                return at, done
        return None

    def healthy_since(self, moment: float, labelled: tuple[bool, ...] = (False, True)) -> bool:
        """Whether traffic served wholly after ``moment`` has been judged healthy: an unlabelled
        window without data drift and a labelled one without a performance drop (labels lag the
        traffic: the second comes last); ``labelled=(False,)``: the unlabelled one alone."""
        healthy: set[bool] = set()
        for _, evaluation in self.evaluations:
            family = "performance" if evaluation.labelled else "data_drift"
            if served_wholly_after(evaluation.window, moment) and not any(
                result.drifted for result in evaluation.results if result.family.value == family
            ):
                healthy.add(evaluation.labelled)
        return healthy >= set(labelled)

    def actions_since(self, after: float) -> list[executor.Executed]:
        return [done for at, done in self.actions if at >= after]

    def labelled_since(self, after: float) -> list[tuple[float, engine_mod.Evaluation]]:
        return [(at, e) for at, e in self.evaluations if at >= after and e.labelled]


def served_after(window: window_mod.Window, moment: float) -> bool:
    stamps = window.timestamps
    return stamps is not None and len(stamps) > 0 and float(np.max(stamps)) >= moment


def served_wholly_after(window: window_mod.Window, moment: float) -> bool:
    stamps = window.timestamps
    return stamps is not None and len(stamps) > 0 and float(np.min(stamps)) >= moment

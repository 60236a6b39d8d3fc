"""Which versions served healthily: clean windows, written to the model registry in batches.

The registry keeps no serving history; a clean window is what makes a version a rollback
candidate later. Registry calls are slow I/O, so a recorder thread batches them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from actions import model_registry, vocabulary
from agent import policy
from agent.pipeline import engine as engine_mod

log = logging.getLogger(__name__)


def vouches_for_version(
    evaluation: engine_mod.Evaluation, decision: policy.Decision, *, labels_flow: bool
) -> str | None:
    """The version a window shows to be healthy, or None when it shows nothing of the kind."""
    version = evaluation.window.model_version
    # A sequential test's alarm at one record says nothing about a window's health.
    if evaluation.at_record:
        return None
    # A detector that raised saw nothing: the window cannot vouch for what it would have judged.
    if evaluation.failed:
        return None
    if version is None or decision.severity != vocabulary.Severity.NONE:
        return None
    # A drifted window whose incident is still pending (below raise_after) is not a clean one.
    if any(report.window_severity is not vocabulary.Severity.NONE for report in decision.incidents):
        return None
    # With ground truth configured, only a labelled window vouches for a version: a bad
    # release looks clean on its inputs until its labels arrive.
    if labels_flow and not evaluation.labelled:
        return None
    return version


class HealthRecorder:
    """Counts clean windows per version and writes them to the registry in batches, off-thread."""

    def __init__(
        self,
        registry: model_registry.ModelRegistry | None,
        *,
        is_leader: Callable[[], bool],
        labels_flow: bool,
        interval_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._is_leader = is_leader
        self._labels_flow = labels_flow
        self._interval_s = interval_s
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-recorder", daemon=True)

    def observe(self, evaluation: engine_mod.Evaluation, decision: policy.Decision) -> None:
        if self._registry is None:
            return
        version = vouches_for_version(evaluation, decision, labels_flow=self._labels_flow)
        # Only the leader writes the registry: followers would race it (and lag it, writing
        # "healthy" onto a version the leader has just rolled back).
        if version is not None and self._is_leader():
            self.note(version)

    def note(self, version: str) -> None:
        with self._lock:
            self._counts[version] = self._counts.get(version, 0) + 1

    def start(self) -> None:
        if self._registry is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if self._registry is None:
            return
        for version, windows in counts.items():
            try:
                self._registry.mark_healthy(version, windows=windows)
            except model_registry.RegistryError as exc:
                log.warning(
                    "could not tag version %s as healthy in the registry (%s); rollback chooses among "
                    "the versions already tagged. Check the registry if this repeats",
                    version,
                    exc,
                )

"""Records in; detector results and decisions out. No Kafka, no files, no threads.

Both `drift-agent run` (Kafka) and `drift-agent replay` (files) drive this one engine, so a
backtest exercises exactly the code that runs in production.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from agent import settings as settings_mod
from agent.ingest import records
from agent.pipeline import label_join as labels_mod
from agent.pipeline import reference, windows
from detectors import base, registry, suite
from detectors import window as window_mod

WindowKey = tuple[str, tuple[tuple[str, str], ...]]


class Decision(Protocol):
    """What the policy returns for one window (agent.policy.Decision satisfies it)."""

    @property
    def severity(self) -> str: ...


class Decider(Protocol):
    def __call__(self, results: Sequence[base.DetectorResult], now: float) -> Decision: ...


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One closed window, what the detectors said about it, and what the policy decided."""

    window: window_mod.Window
    results: tuple[base.DetectorResult, ...]
    decision: Decision | None
    labelled: bool


def _present(evaluations: Iterable[Evaluation | None]) -> list[Evaluation]:
    return [e for e in evaluations if e is not None]


def _key(window: window_mod.Window) -> WindowKey:
    segment = tuple(sorted((window.segment or {}).items()))
    return (window.model_version or "", segment)


class Engine:
    """Holds the reference, the windows, the label join and one detector suite per window key."""

    def __init__(
        self,
        *,
        window: settings_mod.WindowSettings,
        detector_settings: suite.SuiteConfig,
        labels: settings_mod.LabelJoinSettings,
        reference_first_n: int,
        detectors: registry.Registry,
        decide: Decider | None,
        clock: Callable[[], float],
        reference_records: Sequence[records.PredictionRecord] | None = None,
    ) -> None:
        self._window_settings = window
        self._detectors = detectors
        self._unlabelled_config, self._labelled_config = suite.split_by_labels(detector_settings, detectors)
        # Label-joined windows are judged against labelled data: the reference when it carries
        # labels, else the first labelled window seen (the earliest ground truth available).
        self._labelled_reference: window_mod.Window | None = None
        self._decide = decide
        self._clock = clock
        self._collector: reference.ReferenceCollector | None = None
        self._schema: reference.FeatureSchema | None = None
        self._reference_window: window_mod.Window | None = None
        self._windows: windows.WindowManager | None = None
        self._label_windows: windows.WindowManager | None = None
        self._drift_suites: dict[WindowKey, suite.DetectorSuite] = {}
        self._label_suites: dict[WindowKey, suite.DetectorSuite] = {}
        # Sees every label-joined record (the agent feeds its retrain buffer from it); not pickled.
        self.on_joined: Callable[[labels_mod.JoinedRecord], None] | None = None
        self._join = labels_mod.LabelJoin(labels.ttl_s, labels.max_pending, clock=clock)
        if reference_records is not None:
            self._fix_reference(reference_records)
        else:
            self._collector = reference.ReferenceCollector(reference_first_n)

    @property
    def reference_ready(self) -> bool:
        return self._reference_window is not None

    @property
    def window_size(self) -> int:
        """Records per count window (the denominator of the window-fill gauge)."""
        return self._window_settings.size

    @property
    def reference_window(self) -> window_mod.Window | None:
        return self._reference_window

    @property
    def label_join(self) -> labels_mod.LabelJoin:
        return self._join

    def window_fill(self) -> Mapping[WindowKey, int]:
        return self._windows.fill() if self._windows is not None else {}

    def _fix_reference(self, reference_records: Sequence[records.PredictionRecord]) -> None:
        if not reference_records:
            raise ValueError("the reference holds no valid records; check the reference source")
        schema = reference.FeatureSchema.infer(reference_records)
        self._schema = schema
        self._reference_window = reference.to_window(reference_records, schema)
        if self._reference_window.labels is not None:
            self._labelled_reference = self._reference_window
        self._windows = windows.WindowManager(self._window_settings, schema, clock=self._clock)
        label_window_settings = self._window_settings.model_copy(update={"kind": "count"})
        self._label_windows = windows.WindowManager(label_window_settings, schema, clock=self._clock)

    def _suite_for(self, key: WindowKey, *, labelled: bool) -> suite.DetectorSuite:
        suites = self._label_suites if labelled else self._drift_suites
        found = suites.get(key)
        if found is None:
            reference_window = self._labelled_reference if labelled else self._reference_window
            assert reference_window is not None
            config = self._labelled_config if labelled else self._unlabelled_config
            found = suite.DetectorSuite(config, self._detectors)
            found.set_reference(reference_window)
            suites[key] = found
        return found

    def add_prediction(self, record: records.PredictionRecord, index: int) -> list[Evaluation]:
        if self._collector is not None:
            if self._collector.add(record):
                self._fix_reference(self._collector.records())
                self._collector = None
            return []
        assert self._windows is not None
        closed = self._windows.add(record, index)
        evaluations = _present(self._evaluate(window, labelled=False) for window in closed)
        joined = self._join.add_prediction(record, index)
        if joined is not None:
            evaluations.extend(self._add_joined(joined))
        return evaluations

    def add_label(self, label: records.LabelRecord) -> list[Evaluation]:
        joined = self._join.add_label(label)
        if joined is None or self._label_windows is None:
            return []
        return self._add_joined(joined)

    def _add_joined(self, joined: labels_mod.JoinedRecord) -> list[Evaluation]:
        if self.on_joined is not None:
            self.on_joined(joined)
        if self._label_windows is None:
            return []
        closed = self._label_windows.add(joined.record, joined.index, label=joined.label)
        return _present(self._evaluate(window, labelled=True) for window in closed)

    def tick(self) -> list[Evaluation]:
        """Close time windows whose end has passed on the clock, even if no record arrives."""
        evaluations: list[Evaluation] = []
        if self._windows is not None:
            evaluations.extend(_present(self._evaluate(w, labelled=False) for w in self._windows.tick()))
        return evaluations

    def expire_labels(self) -> int:
        return self._join.expire()

    def flush(self) -> list[Evaluation]:
        """Close partial windows (end of a replay; shutdown)."""
        evaluations: list[Evaluation] = []
        if self._windows is not None:
            evaluations.extend(_present(self._evaluate(w, labelled=False) for w in self._windows.flush()))
        if self._label_windows is not None:
            evaluations.extend(
                _present(self._evaluate(w, labelled=True) for w in self._label_windows.flush())
            )
        return evaluations

    def _evaluate(self, window: window_mod.Window, *, labelled: bool) -> Evaluation | None:
        if labelled and self._labelled_reference is None:
            self._labelled_reference = window
            return None
        results = tuple(self._suite_for(_key(window), labelled=labelled).update(window))
        decision = self._decide(results, self._clock()) if self._decide is not None else None
        return Evaluation(window=window, results=results, decision=decision, labelled=labelled)

    def attach(self, decide: Decider | None) -> None:
        """Re-attach the decider after a checkpoint restore (it is not pickled)."""
        self._decide = decide

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        # The decider holds live objects (override watcher); its state is checkpointed as JSON.
        state["_decide"] = None
        state["on_joined"] = None
        return state


def build(
    settings: settings_mod.AgentSettings,
    *,
    decide: Decider | None,
    clock: Callable[[], float],
    reference_records: list[records.PredictionRecord] | None,
) -> Engine:
    """An engine from the settings tree: the composition roots (run, replay) call this."""
    return Engine(
        window=settings.window,
        detector_settings=settings.detectors,
        labels=settings.labels,
        reference_first_n=settings.reference.first_n,
        detectors=registry.default_registry(),
        decide=decide,
        clock=clock,
        reference_records=reference_records,
    )

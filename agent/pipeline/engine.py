"""Records in; detector results and decisions out. No Kafka, no files, no threads.

Both `drift-agent run` (Kafka) and `drift-agent replay` (files) drive this one engine, so a
backtest exercises exactly the code that runs in production. Predictions and label-joined
records come in already joined (the ingest stage joins them); ``state()`` / ``restore()`` hand
everything the engine learned to another process as plain data.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from agent import settings as settings_mod
from agent.ingest import records
from agent.pipeline import reference, window_codec, windows
from detectors import base, registry, suite
from detectors import window as window_mod

WindowKey = tuple[str, tuple[tuple[str, str], ...]]
Label = int | float | str
log = logging.getLogger(__name__)

# Bumped when EngineState changes shape: an older agent's state is then dropped, never misread.
STATE_FORMAT = 1


class Decision(Protocol):
    """What the policy returns for one window (agent.policy.Decision satisfies it)."""

    @property
    def severity(self) -> str: ...


class Decider(Protocol):
    def __call__(self, results: Sequence[base.DetectorResult], now: float) -> Decision: ...


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One closed window, what the detectors said about it, and what the policy decided.

    ``at_record``: not a window but the label-joined record at which a sequential test fired;
    ``window`` then holds that record's version, segment, index and time, and no rows.
    """

    window: window_mod.Window
    results: tuple[base.DetectorResult, ...]
    decision: Decision | None
    labelled: bool
    at_record: bool = False
    # Detectors that raised on this window (their results are missing; the others ran).
    failed: tuple[suite.Failed, ...] = ()


def _present(evaluations: Iterable[Evaluation | None]) -> list[Evaluation]:
    return [e for e in evaluations if e is not None]


def _key(window: window_mod.Window) -> WindowKey:
    return _key_of(window.model_version, window.segment)


def _key_of(model_version: str | None, segment: Mapping[str, str] | None) -> WindowKey:
    return (model_version or "", tuple(sorted((segment or {}).items())))


class SuiteState(msgspec.Struct, array_like=True, gc=False):
    version: str
    segment: list[tuple[str, str]]
    labelled: bool
    detectors: dict[str, dict[str, Any]]


class EngineState(msgspec.Struct, array_like=True, gc=False):
    """What an engine learned, as data; ``reference`` only when it was collected (first N)."""

    format: int
    reference: list[records.PredictionRecord] | None
    collected: list[records.PredictionRecord] | None
    labelled_reference: window_codec.WindowData | None
    prediction_windows: windows.WindowsState | None
    label_windows: windows.WindowsState | None
    suites: list[SuiteState]
    # The sequential tests fed record by record (added after format 1; absent in older state).
    record_suites: list[SuiteState] = msgspec.field(default_factory=list)


class Engine:
    """Holds the reference, the windows and one detector suite per window key."""

    def __init__(
        self,
        *,
        window: settings_mod.WindowSettings,
        detector_settings: suite.SuiteConfig,
        reference_first_n: int,
        allowed_lateness_s: float = 0.0,
        detectors: registry.Registry,
        decide: Decider | None,
        clock: Callable[[], float],
        reference_records: Sequence[records.PredictionRecord] | None = None,
        reference_labels: Sequence[float | str | None] | None = None,
    ) -> None:
        """``reference_labels``: aligned with ``reference_records`` (None where a row has none)."""
        self._window_settings = window
        self._lateness = allowed_lateness_s
        self._detectors = detectors
        self._unlabelled_config, labelled_config = suite.split_by_labels(detector_settings, detectors)
        # Sequential tests on the error stream see every label-joined record as it arrives.
        self._record_config, self._labelled_config = suite.split_record_fed(labelled_config, detectors)
        # Label-joined windows are judged against labelled data: the reference when it carries
        # labels, else the first labelled window seen (the earliest ground truth available).
        self._labelled_reference: window_mod.Window | None = None
        self._reported_waiting: set[str] = set()  # detectors whose waiting was logged
        self._decide = decide
        self._clock = clock
        self._collector: reference.ReferenceCollector | None = None
        self._schema: reference.FeatureSchema | None = None
        self._reference_window: window_mod.Window | None = None
        self._windows: windows.WindowManager | None = None
        self._label_windows: windows.WindowManager | None = None
        self._drift_suites: dict[WindowKey, suite.DetectorSuite] = {}
        self._label_suites: dict[WindowKey, suite.DetectorSuite] = {}
        self._record_suites: dict[WindowKey, suite.DetectorSuite] = {}
        # Sees every label-joined record (the agent feeds its retrain buffer from it).
        self.on_joined: Callable[[records.PredictionRecord, Label], None] | None = None
        # The reference was collected from the stream (first N): it is part of the state.
        self._collected_reference: list[records.PredictionRecord] | None = None
        self._reference_first_n = reference_first_n
        if reference_records is not None:
            self._fix_reference(reference_records, reference_labels)
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
    def evicted_windows(self) -> int:
        """Windows dropped unevaluated for a newer (version, segment) key, since this engine started."""
        return sum(w.evicted_windows for w in (self._windows, self._label_windows) if w is not None)

    @property
    def suites(self) -> int:
        """Detector suites held (one per window key and kind): bounded by the window keys."""
        return len(self._drift_suites) + len(self._label_suites) + len(self._record_suites)

    def window_fill(self) -> Mapping[WindowKey, int]:
        return self._windows.fill() if self._windows is not None else {}

    def _fix_reference(
        self,
        reference_records: Sequence[records.PredictionRecord],
        labels: Sequence[float | str | None] | None = None,
    ) -> None:
        if not reference_records:
            raise ValueError("the reference holds no valid records; check the reference source")
        schema = reference.FeatureSchema.infer(reference_records)
        self._schema = schema
        self._reference_window = reference.to_window(reference_records, schema, labels=labels)
        if self._reference_window.labels is not None:
            self._labelled_reference = self._reference_window
        self._windows = windows.WindowManager(
            self._window_settings, schema, clock=self._clock, allowed_lateness_s=self._lateness
        )
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
            if found.waiting and not labelled and self._labelled_reference is not None:
                found.offer_reference(self._labelled_reference)
            self._report_waiting(found)
            suites[key] = found
        return found

    def _record_suite_for(self, key: WindowKey) -> suite.DetectorSuite:
        found = self._record_suites.get(key)
        if found is None:
            found = self._record_suites[key] = suite.DetectorSuite(self._record_config, self._detectors)
        return found

    def _report_waiting(self, found: suite.DetectorSuite) -> None:
        """One line per detector that cannot start yet, naming its setting; never a traceback."""
        for name, reason in found.waiting.items():
            if name not in self._reported_waiting:
                self._reported_waiting.add(name)
                log.warning(
                    "detectors.detectors.%s cannot start yet: %s. It starts on the first label-joined "
                    "window that fits (labels flow through kafka.labels_topic); until then it is skipped.",
                    name,
                    reason,
                )

    def _offer_labelled_reference(self, reference_window: window_mod.Window) -> None:
        """Detectors the unlabelled reference did not fit (CBPE needs labels) try the labelled one."""
        for found in self._drift_suites.values():
            for name in found.offer_reference(reference_window):
                log.info(
                    "detectors.detectors.%s started: the first label-joined window is its reference", name
                )
            self._report_waiting(found)

    def add_prediction(self, record: records.PredictionRecord, index: int) -> list[Evaluation]:
        if self._collector is not None:
            if self._collector.add(record):
                self._collected_reference = self._collector.records()
                self._fix_reference(self._collected_reference)
                self._collector = None
            return []
        assert self._windows is not None
        closed = self._windows.add(record, index)
        for key in self._windows.take_evicted_keys():
            # A key evicted for a newer one (max_open_windows) frees its detectors too: random
            # versions or segments cannot grow the suites without bound.
            self._drift_suites.pop(key, None)
        return _present(self._evaluate(window, labelled=False) for window in closed)

    def add_joined(self, record: records.PredictionRecord, label: Label, index: int) -> list[Evaluation]:
        """A prediction with its ground truth (``index``: the prediction's arrival index)."""
        if self.on_joined is not None:
            self.on_joined(record, label)
        if self._label_windows is None:
            return []
        evaluations = self._feed_record(record, label, index)
        closed = self._label_windows.add(record, index, label=label)
        for key in self._label_windows.take_evicted_keys():
            self._label_suites.pop(key, None)
            self._record_suites.pop(key, None)
        evaluations.extend(_present(self._evaluate(window, labelled=True) for window in closed))
        return evaluations

    def _feed_record(self, record: records.PredictionRecord, label: Label, index: int) -> list[Evaluation]:
        """The sequential tests' alarms at this record, judged by the policy at once."""
        if not self._record_config.detectors:
            return []
        assert self._label_windows is not None
        segment = self._label_windows.segment_of(record)
        record_suite = self._record_suite_for(_key_of(record.model_version, segment))
        alarms = record_suite.update_record(
            record.prediction, label, index, model_version=record.model_version, segment=segment
        )
        failed = tuple(record_suite.failed)
        if not alarms and not failed:
            return []
        at = window_mod.Window(
            features={},
            model_version=record.model_version,
            segment=segment,
            last_record_index=index,
            timestamps=np.asarray([record.timestamp]),
        )
        decision = self._decide(alarms, self._clock()) if self._decide is not None and alarms else None
        return [
            Evaluation(
                window=at,
                results=tuple(alarms),
                decision=decision,
                labelled=True,
                at_record=True,
                failed=failed,
            )
        ]

    def advance(self, watermark: float) -> list[Evaluation]:
        """Every input has reached event time ``watermark``: close the time windows it passed."""
        if self._windows is None:
            return []
        return _present(self._evaluate(w, labelled=False) for w in self._windows.advance(watermark))

    def tick(self) -> list[Evaluation]:
        """Close time windows whose end has passed on the clock, even if no record arrives."""
        evaluations: list[Evaluation] = []
        if self._windows is not None:
            evaluations.extend(_present(self._evaluate(w, labelled=False) for w in self._windows.tick()))
        return evaluations

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
            self._offer_labelled_reference(window)
            return None
        window_suite = self._suite_for(_key(window), labelled=labelled)
        results = tuple(window_suite.update(window))
        failed = tuple(window_suite.failed)
        record_suite = self._record_suites.get(_key(window)) if labelled else None
        if record_suite is not None:
            results += tuple(record_suite.summarise(window))
            failed += tuple(record_suite.failed)
        decision = self._decide(results, self._clock()) if self._decide is not None else None
        return Evaluation(window=window, results=results, decision=decision, labelled=labelled, failed=failed)

    # -- state as data ------------------------------------------------------------------------------

    def state(self) -> EngineState:
        labelled_reference = None
        if self._labelled_reference is not None and self._labelled_reference is not self._reference_window:
            labelled_reference = window_codec.encode(self._labelled_reference)
        return EngineState(
            format=STATE_FORMAT,
            reference=self._collected_reference,
            collected=self._collector.records() if self._collector is not None else None,
            labelled_reference=labelled_reference,
            prediction_windows=self._windows.state() if self._windows is not None else None,
            label_windows=self._label_windows.state() if self._label_windows is not None else None,
            suites=[
                SuiteState(key[0], list(key[1]), labelled, {n: d.state() for n, d in found.detectors.items()})
                for labelled, suites in ((False, self._drift_suites), (True, self._label_suites))
                for key, found in suites.items()
            ],
            record_suites=[
                SuiteState(key[0], list(key[1]), True, {n: d.state() for n, d in found.detectors.items()})
                for key, found in self._record_suites.items()
            ],
        )

    def restore(self, state: EngineState, *, keep_windows: bool = True, keep_detectors: bool = True) -> None:
        """Continue from ``state``. ``keep_*`` False drops the parts the settings no longer fit."""
        if state.format != STATE_FORMAT:
            raise ValueError(f"engine state format {state.format}, this agent reads {STATE_FORMAT}")
        self._restore_reference(state)
        if keep_windows:
            if state.prediction_windows is not None and self._windows is not None:
                self._windows.restore(state.prediction_windows)
            if state.label_windows is not None and self._label_windows is not None:
                self._label_windows.restore(state.label_windows)
        if keep_detectors and self._reference_window is not None:
            self._restore_detectors(state.suites)
            for saved in state.record_suites:
                _load_states(self._record_suite_for((saved.version, tuple(saved.segment))), saved)

    def _restore_reference(self, state: EngineState) -> None:
        if self._reference_window is None:
            if state.reference is not None:
                self._collected_reference = list(state.reference)
                self._fix_reference(self._collected_reference)
                self._collector = None
            elif state.collected is not None and self._collector is not None:
                for record in state.collected[: self._reference_first_n]:
                    self._collector.add(record)
        if state.labelled_reference is not None:
            self._labelled_reference = window_codec.decode(state.labelled_reference)

    def _restore_detectors(self, suites: Sequence[SuiteState]) -> None:
        for saved in suites:
            if saved.labelled and self._labelled_reference is None:
                continue
            _load_states(
                self._suite_for((saved.version, tuple(saved.segment)), labelled=saved.labelled), saved
            )


def _load_states(found: suite.DetectorSuite, saved: SuiteState) -> None:
    for name, detector_state in saved.detectors.items():
        if name in found.detectors:
            found.detectors[name].load_state(detector_state)


def build(
    settings: settings_mod.AgentSettings,
    *,
    decide: Decider | None,
    clock: Callable[[], float],
    reference_records: list[records.PredictionRecord] | None,
    reference_labels: Sequence[float | str | None] | None = None,
) -> Engine:
    """An engine from the settings tree: the composition roots (run, replay) call this."""
    return Engine(
        window=settings.window,
        detector_settings=settings.detectors,
        reference_first_n=settings.reference.first_n,
        allowed_lateness_s=settings.streams.allowed_lateness_s,
        detectors=registry.default_registry(),
        decide=decide,
        clock=clock,
        reference_records=reference_records,
        reference_labels=reference_labels,
    )

"""A configured set of detectors run together on each window (one suite per model version/segment).

The lead wires ``SuiteConfig`` into the settings tree as the ``detectors`` group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from detectors import base, registry
from detectors import window as window_mod


def _default_detectors() -> dict[str, dict[str, Any]]:
    # What a production sidecar wants on day one; the rest (mmd, domain_classifier, cbpe, ddm,
    # page_hinkley, vector_domain_classifier) are opt-in by name. ADWIN watches the error stream
    # record by record; it only runs where labels flow (kafka.labels_topic). The data-quality checks
    # tell a broken pipeline from drift. The vector detectors skip quietly when the reference has no
    # vector features; the vector domain classifier is opt-in: it alarmed in 7.5 % of stationary
    # digits windows (tests/integration/slow_vectors), above its nominal 5 %.
    return {
        "data_drift": {},
        "prediction_drift": {},
        "vector_mmd": {},
        "vector_component_drift": {},
        "latency": {},
        "error_rate": {},
        "performance": {},
        "adwin": {},
        **{name: {} for name in QUALITY_CHECKS},
    }


# detectors.quality.NAMES, spelled out so that importing the suite stays cheap (a test keeps them
# in step).
QUALITY_CHECKS = (
    "missing_values",
    "schema",
    "type_mismatch",
    "out_of_range",
    "unseen_categories",
    "frozen_features",
    "duplicate_ids",
)


class SuiteConfig(pydantic.BaseModel):
    """Which detectors run, by registry name, each with its config (see each detector's config)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    detectors: dict[str, dict[str, Any]] = pydantic.Field(
        default_factory=_default_detectors,
        description="Detector name -> its config dict, e.g. {data_drift: {drift_share: 0.5}}. "
        "Unknown names fail at start-up with the list of valid names.",
    )


def split_by_labels(config: SuiteConfig, detectors: registry.Registry) -> tuple[SuiteConfig, SuiteConfig]:
    """(detectors for the raw prediction stream, detectors for label-joined windows)."""
    unlabelled = {n: c for n, c in config.detectors.items() if not detectors.get(n).requires_labels}
    labelled = {n: c for n, c in config.detectors.items() if detectors.get(n).requires_labels}
    return SuiteConfig(detectors=unlabelled), SuiteConfig(detectors=labelled)


def split_record_fed(config: SuiteConfig, detectors: registry.Registry) -> tuple[SuiteConfig, SuiteConfig]:
    """(sequential tests fed record by record, detectors fed whole windows)."""
    by_record = {n: c for n, c in config.detectors.items() if issubclass(detectors.get(n), base.FedByRecord)}
    by_window = {n: c for n, c in config.detectors.items() if n not in by_record}
    return SuiteConfig(detectors=by_record), SuiteConfig(detectors=by_window)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A detector that could not run on a window, and why (e.g. no labels yet)."""

    detector: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Failed:
    """A detector that raised on a window or a record: its result is missing; the others ran."""

    detector: str
    error: str  # the exception's class and its message, cut short


# How much of a detector's exception text a Failed keeps.
ERROR_CHARS = 300


def _failed(name: str, exc: Exception) -> Failed:
    text = str(exc)
    return Failed(name, (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:ERROR_CHARS])


class DetectorSuite:
    """Builds every configured detector up front, so a bad name or config fails at start-up.

    A detector that raises on a window (anything but ``CannotRun``) is isolated: the suite notes it
    in ``failed`` and runs the others; one bad detector or one unforeseen window never stops
    detection.
    """

    def __init__(self, config: SuiteConfig, detectors: registry.Registry | None = None) -> None:
        self.config = config
        self.registry = detectors if detectors is not None else registry.default_registry()
        self.detectors: dict[str, base.Detector[Any]] = {
            name: self.registry.create(name, options) for name, options in config.detectors.items()
        }
        # What the last update() skipped; the pipeline reports it (metrics, audit), not an error.
        self.skipped: list[Skipped] = []
        # Detectors the reference did not fit (``ReferenceUnfitError``) -> why; skipped until one does.
        self.waiting: dict[str, str] = {}
        # What raised in the last update(), summarise() or update_record() call.
        self.failed: list[Failed] = []

    def set_reference(self, reference: window_mod.Window) -> None:
        for name, detector in self.detectors.items():
            if not isinstance(detector, base.NeedsReference):
                continue
            if detector.requires_labels and reference.labels is None:
                # Judged against labelled data only; until it has some, update() raises
                # CannotRun and the suite skips it (the agent gives label-joined windows their
                # own labelled reference).
                continue
            self._try_reference(name, detector, reference)

    def offer_reference(self, reference: window_mod.Window) -> list[str]:
        """Try the waiting detectors on another reference; the names of those that start."""
        started = []
        for name in list(self.waiting):
            detector = self.detectors[name]
            if isinstance(detector, base.NeedsReference) and self._try_reference(name, detector, reference):
                started.append(name)
        return started

    def _try_reference(self, name: str, detector: base.NeedsReference, reference: window_mod.Window) -> bool:
        try:
            detector.set_reference(reference)
        except base.ReferenceUnfitError as unfit:
            self.waiting[name] = str(unfit)
            return False
        self.waiting.pop(name, None)
        return True

    def update(self, window: window_mod.Window) -> list[base.DetectorResult]:
        results: list[base.DetectorResult] = []
        self.skipped = []
        self.failed = []
        for name, detector in self.detectors.items():
            if name in self.waiting:
                self.skipped.append(Skipped(name, self.waiting[name]))
                continue
            try:
                results.append(detector.update(window))
            except base.CannotRun as reason:
                self.skipped.append(Skipped(name, str(reason)))
            except Exception as exc:
                self.failed.append(_failed(name, exc))
        return results

    def update_record(
        self,
        prediction: object,
        label: object,
        index: int,
        *,
        model_version: str | None,
        segment: Mapping[str, str] | None,
    ) -> list[base.DetectorResult]:
        """Feed one label-joined record to the sequential tests; the alarms it raised."""
        alarms = []
        self.failed = []
        for name, detector in self.detectors.items():
            if not isinstance(detector, base.FedByRecord):
                continue
            try:
                found = detector.update_record(
                    prediction, label, index, model_version=model_version, segment=segment
                )
            except Exception as exc:
                self.failed.append(_failed(name, exc))
                continue
            if found is not None:
                alarms.append(found)
        return alarms

    def summarise(self, window: window_mod.Window) -> list[base.DetectorResult]:
        """What the record-fed tests saw since their last summary (``window``: the one closing)."""
        results: list[base.DetectorResult] = []
        self.skipped = []
        self.failed = []
        for name, detector in self.detectors.items():
            if not isinstance(detector, base.FedByRecord):
                continue
            try:
                results.append(detector.summarise(window))
            except base.CannotRun as reason:
                self.skipped.append(Skipped(name, str(reason)))
            except Exception as exc:
                self.failed.append(_failed(name, exc))
        return results

    def reset(self) -> None:
        for detector in self.detectors.values():
            detector.reset()

    def names(self) -> tuple[str, ...]:
        return tuple(self.detectors)

    def configs(self) -> Mapping[str, base.DetectorConfig]:
        """The validated config of each detector (defaults filled in), e.g. for the audit log."""
        return {name: detector.config for name, detector in self.detectors.items()}

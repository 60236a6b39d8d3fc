"""The detector contract: a pydantic config in, ``update(window) -> DetectorResult`` out.

Shaped after River's ``base.DriftDetector``: configured by its constructor, stateful between
windows, ``reset()`` to forget, no I/O. Results are frozen so the policy and the audit log can
keep them without copying.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pydantic

from detectors import window as window_mod


class DetectorFamily(enum.StrEnum):
    """What a detector watches; the policy and incident grouping key on it."""

    DATA_DRIFT = "data_drift"
    PREDICTION_DRIFT = "prediction_drift"
    CONCEPT_DRIFT = "concept_drift"
    PERFORMANCE = "performance"
    LATENCY = "latency"
    ERRORS = "errors"
    # A broken pipeline, not drift (detectors.quality): pages the data owner, never remediates.
    QUALITY = "quality"


@dataclasses.dataclass(frozen=True)
class DetectorResult:
    """One verdict. ``score`` is compared with ``threshold``; ``drifted`` is the verdict.

    ``higher_is_drift`` says which side of the threshold is drift (False for p-values).
    ``details`` holds per-feature results of a dataset-level verdict.
    """

    detector: str
    family: DetectorFamily
    feature: str | None
    statistic: str
    score: float
    threshold: float
    drifted: bool
    higher_is_drift: bool = True
    p_value: float | None = None
    effect_size: float | None = None
    reference_size: int = 0
    current_size: int = 0
    missing_count: int = 0
    model_version: str | None = None
    segment: Mapping[str, str] | None = None
    details: tuple[DetectorResult, ...] = ()
    # Arrival index of the record at which a sequential test (fed record by record) fired; such an
    # alarm is reported when that record arrives, not when a window closes. None for window verdicts.
    alarm_at_record: int | None = None
    # Extra numbers worth exporting (latency quantiles, performance metrics, bands).
    extras: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; nested details included."""
        out: dict[str, Any] = {
            "detector": self.detector,
            "family": self.family.value,
            "feature": self.feature,
            "statistic": self.statistic,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "higher_is_drift": self.higher_is_drift,
            "p_value": self.p_value,
            "effect_size": self.effect_size,
            "reference_size": self.reference_size,
            "current_size": self.current_size,
            "missing_count": self.missing_count,
            "model_version": self.model_version,
            "segment": dict(self.segment) if self.segment is not None else None,
            "alarm_at_record": self.alarm_at_record,
            "extras": dict(self.extras),
        }
        if self.details:
            out["details"] = [d.to_json() for d in self.details]
        return out


class DetectorConfig(pydantic.BaseModel):
    """Base of every detector's config. Unknown keys are errors, not silently ignored."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=DetectorConfig)


class ReferenceUnfitError(ValueError):
    """The reference lacks what the detector needs (labels, confidences, rows); the message says what.

    The suite holds the detector back, skipping it with that reason, until a reference that fits
    is offered (the agent offers its first label-joined window).
    """


class CannotRun(Exception):  # noqa: N818 - reads as "raise CannotRun(...)", a skip, not a failure
    """This window lacks what the detector needs (no labels, no reference, no predictions).

    "No data" is neither success nor failure: the suite skips the detector for this window and
    says why (the message), instead of reporting an error or a fake verdict.
    """


@dataclasses.dataclass(frozen=True)
class ConformanceExample:
    """How the generated conformance tests exercise a detector (tests/unit/detectors/test_conformance.py).

    Every registered detector class implements the classmethod
    ``conformance_example(rng: np.random.Generator) -> ConformanceExample``; the tests call it for
    each class in ``registry.default_registry()`` and check: same seed -> same results, ``reset()``
    -> same results as a fresh detector, ``pickle`` round trip -> same results, and on a stationary
    stream an alarm rate within ``false_alarm_rate`` (plus the binomial margin over many seeds).

    * ``config``: a valid config dict for ``registry.create(name, config)``.
    * ``reference``: the reference window for ``set_reference`` (detectors with ``NeedsReference``),
      else ``None``.
    * ``make_window(rng)``: one window of a stationary stream (same distribution as the reference);
      called repeatedly, it must draw only from the ``rng`` it is given.
    * ``false_alarm_rate``: the alarm rate per window the config promises on such a stream (for a
      test at p < 0.05, 0.05).
    """

    config: Mapping[str, Any]
    reference: window_mod.Window | None
    make_window: Callable[[np.random.Generator], window_mod.Window]
    false_alarm_rate: float


class Detector(abc.ABC, Generic[ConfigT]):
    """A pure, stateful detector. Subclasses set ``name``, ``family`` and ``config_class``.

    ``update`` raises ``CannotRun`` when a window lacks what it needs; every class also provides
    ``conformance_example`` (see ``ConformanceExample``).
    """

    name: ClassVar[str]
    family: ClassVar[DetectorFamily]
    config_class: ClassVar[type[DetectorConfig]]
    # True when the detector judges predictions against ground truth: the agent runs it on
    # windows of label-joined records instead of on the raw prediction stream.
    requires_labels: ClassVar[bool] = False

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abc.abstractmethod
    def update(self, window: window_mod.Window) -> DetectorResult:
        """Consume one window and return the verdict for it."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything learned from windows (the reference, if any, is kept)."""

    def state(self) -> dict[str, Any]:
        """What the detector learned from windows, as plain data (JSON/msgpack types).

        The agent stores it between windows and restores it with ``load_state`` on another
        process, so it must hold everything ``update`` depends on besides the config and the
        reference. Most detectors judge each window on its own: they learn nothing (``{}``).
        """
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (what ``state()`` returned, possibly in another process)."""
        if state:
            raise ValueError(f"{self.name} keeps no state between windows, got keys {sorted(state)}")

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> ConformanceExample:
        """A valid config, reference and stationary stream for the conformance tests."""
        raise NotImplementedError(
            f"{cls.__qualname__} must implement conformance_example(rng); "
            "see detectors.base.ConformanceExample"
        )


class NeedsReference(abc.ABC):
    """Ability: the detector compares windows with a reference window."""

    @abc.abstractmethod
    def set_reference(self, reference: window_mod.Window) -> None:
        """Fix the reference that later windows are compared with."""


class FedByRecord(abc.ABC):
    """Ability: a sequential test fed one label-joined record at a time.

    The agent hands every label-joined record to ``update_record`` as it arrives, so an alarm is
    reported at the record where the test fired (``DetectorResult.alarm_at_record``), whatever
    the window size; when a label window closes, ``summarise`` reports what the records fed since
    the previous summary showed (the policy counts it like any window verdict).
    """

    @abc.abstractmethod
    def update_record(
        self,
        prediction: object,
        label: object,
        index: int,
        *,
        model_version: str | None,
        segment: Mapping[str, str] | None,
    ) -> DetectorResult | None:
        """Consume one record (``index``: its arrival position); a result only when the test fires."""

    @abc.abstractmethod
    def summarise(self, window: window_mod.Window) -> DetectorResult:
        """The verdict over the records fed since the last summary (``window`` names version and segment).

        Raises ``CannotRun`` when no usable record was fed since then.
        """

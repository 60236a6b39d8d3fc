"""What the canary controller remembers and what it asks for: plain frozen dataclasses.

``CanaryState`` is everything ``step`` needs to continue a canary, and it round-trips through
JSON (``to_json`` / ``from_json``), so a ``StateStore`` (a file here; the agent's is a compacted
Kafka topic) lets a restarted agent resume mid-canary.
``CanaryAction`` is what ``step`` asks the ticker to do; actions are written into the state as
``pending`` before they are carried out, so a crash between the two repeats them (every one is
idempotent) instead of losing them.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pydantic

from actions.targets import base as target_base

SCHEMA_VERSION = 1
HISTORY_KEPT = 50  # events kept in the state file; the audit log has them all


class Phase(enum.StrEnum):
    PROGRESSING = "progressing"  # traffic at a step: waiting for the rollout or data, or analysing
    PAUSED = "paused"  # an operator's pause: traffic held, no analysis, no failed checks
    PROMOTING = "promoting"  # the candidate serves all traffic; waiting for that rollout
    PROMOTED = "promoted"  # done: the candidate is the champion
    ROLLED_BACK = "rolled_back"  # done: failed checks, a failed rollout or an operator's abort
    ABANDONED = "abandoned"  # done without touching the target: someone else changed what serves


FINISHED = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABANDONED})

CommandKind = Literal["pause", "resume", "abort", "promote"]


@dataclasses.dataclass(frozen=True)
class Command:
    """An operator's command from the override file (``canary:`` entries)."""

    kind: CommandKind
    id: str | None = None

    @property
    def key(self) -> str:
        """abort/promote act once per key; without an id, once per canary."""
        return f"{self.kind}:{self.id or ''}"


@dataclasses.dataclass(frozen=True)
class VersionSummary:
    """What one version's traffic looked like in one analysis interval."""

    version: str | None
    count: int
    status_count: int = 0  # records that said ok or error
    errors: int = 0
    latency_p95_ms: float | None = None
    gpu_latency_p95_ms: float | None = None
    labelled: int = 0
    performance: float | None = None  # the decisive metric (Observations.performance_metric)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.status_count if self.status_count else None


@dataclasses.dataclass(frozen=True)
class DriftSummary:
    """Canary traffic tested against stable traffic (the stable window is the reference)."""

    detector: str
    share: float  # of columns drifted
    drifted_columns: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LatencySamples:
    """One version's latency samples over the analysed interval (never saved: only judged)."""

    latency_ms: npt.NDArray[np.float64] | None = None
    gpu_latency_ms: npt.NDArray[np.float64] | None = None


@dataclasses.dataclass(frozen=True)
class PerformanceTest:
    """The canary's label-joined metric tested against the stable version's (detectors.concept)."""

    metric: str
    canary: float
    stable: float
    p_value: float  # one-sided: the canary is worse
    higher_is_better: bool
    n_canary: int
    n_stable: int


@dataclasses.dataclass(frozen=True)
class Observations:
    """One tick's input: per-version summaries for the interval plus what the operator and target say.

    ``rollout`` and ``serving_version`` are filled in by the controller from the target when the
    caller leaves them out.
    """

    canary: VersionSummary | None = None
    stable: VersionSummary | None = None
    data_drift: DriftSummary | None = None
    prediction_drift: DriftSummary | None = None
    performance_metric: str | None = None
    performance_higher_is_better: bool = True
    # Raw samples for the statistical checks; without them a latency check is inconclusive.
    canary_samples: LatencySamples | None = None
    stable_samples: LatencySamples | None = None
    performance: PerformanceTest | None = None
    # Whether labels reach the agent at all: without a labels source the performance check is not
    # applicable (it passes with that note); with one, missing labelled rows make it inconclusive.
    labels_expected: bool = False
    command: Command | None = None
    rollout: target_base.RolloutPhase | None = None
    rollout_message: str = ""
    serving_version: str | None = None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check of one analysis, with the statistic behind its verdict (actions.canary.judge)."""

    name: str
    passed: bool  # False for a failure and for an inconclusive check (which pauses the step)
    value: float | None = None
    bound: float | None = None
    note: str = ""  # what it compared and what the test said, or why it did not run
    outcome: str = ""  # pass | fail | inconclusive ("" in states written before: read ``passed``)
    statistic: str = ""  # the test: binomial, bootstrap_p95_ratio, two_proportion_z, ...
    baseline: float | None = None  # the stable version's number (or the fixed bound it is held to)
    p_value: float | None = None
    n_canary: int | None = None
    n_stable: int | None = None
    min_samples: int | None = None

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"

    @property
    def failed(self) -> bool:
        return not self.passed and not self.inconclusive


@dataclasses.dataclass(frozen=True)
class Analysis:
    at: float
    percent: int
    passed: bool
    checks: tuple[CheckResult, ...]

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if check.failed)

    @property
    def inconclusive(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if check.inconclusive)


@dataclasses.dataclass(frozen=True)
class SetTraffic:
    percent: int
    kind: Literal["set_traffic"] = "set_traffic"


@dataclasses.dataclass(frozen=True)
class Promote:
    version: str
    at: float  # when it was decided: registry history written with it stays idempotent on replay
    kind: Literal["promote"] = "promote"


@dataclasses.dataclass(frozen=True)
class Rollback:
    reason: str
    at: float
    kind: Literal["rollback"] = "rollback"


@dataclasses.dataclass(frozen=True)
class Alert:
    event: str  # rolled_back | promoted | abandoned | stalled: part of the alert's idempotency key
    reason: str
    severity: str = "severe"
    kind: Literal["alert"] = "alert"


@dataclasses.dataclass(frozen=True)
class Wait:
    reason: str
    kind: Literal["wait"] = "wait"


CanaryAction = Annotated[SetTraffic | Promote | Rollback | Alert | Wait, pydantic.Field(discriminator="kind")]


@dataclasses.dataclass(frozen=True)
class Event:
    at: float
    what: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class CanaryState:
    """One canary run. ``steps`` is copied from the config at start: a config change mid-canary
    must not make the running one jump or repeat steps."""

    canary_id: str
    model_name: str
    stable_version: str
    candidate_version: str
    steps: tuple[int, ...]
    started_at: float
    phase: Phase = Phase.PROGRESSING
    step_index: int = 0
    step_started_at: float = 0.0  # when traffic moved to this step
    ready_at: float | None = None  # when the split was seen served; the interval counts from here
    failed_checks: int = 0
    waiting: str = ""  # why no analysis ran on the last tick ("" when one did)
    waiting_since: float | None = None
    stall_alerted: bool = False
    baseline: VersionSummary | None = None  # last stable summary with enough data
    last_analysis: Analysis | None = None
    handled_commands: tuple[str, ...] = ()
    finished_at: float | None = None
    reason: str = ""
    history: tuple[Event, ...] = ()
    # The ticker's part: what it resolved at start and what it has yet to carry out.
    stable_model_uri: str = ""
    candidate_model_uri: str = ""
    aliases_before: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pending: tuple[CanaryAction, ...] = ()
    # What each step really serves (replica arithmetic; exact on KServe), found when planning.
    shares: tuple[target_base.ServedShare, ...] = ()

    @property
    def share(self) -> target_base.ServedShare | None:
        """This step's share, asked and served (None in states written before shares existed)."""
        if self.phase is not Phase.PROGRESSING and self.phase is not Phase.PAUSED:
            return None
        return self.shares[self.step_index] if self.step_index < len(self.shares) else None

    @property
    def percent(self) -> int:
        """Canary traffic share now (100 once promoting or promoted, 0 once rolled back)."""
        if self.phase in (Phase.PROMOTING, Phase.PROMOTED):
            return 100
        if self.phase in (Phase.ROLLED_BACK, Phase.ABANDONED):
            return 0
        return self.steps[self.step_index]

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    def with_event(self, at: float, what: str, detail: str = "") -> CanaryState:
        return dataclasses.replace(self, history=(*self.history, Event(at, what, detail))[-HISTORY_KEPT:])

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _STATE.dump_python(self, mode="json")
        return {"schema": SCHEMA_VERSION, **data}

    @classmethod
    def from_json(cls, data: object, source: str = "canary state") -> CanaryState:
        if not isinstance(data, dict):
            raise StateFileError(
                f"{source}: expected a JSON object, got {type(data).__name__}; move the file away to forget "
                "the canary"
            )
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise StateFileError(
                f"{source}: schema {schema!r} is not {SCHEMA_VERSION}; finish or abort that canary with the "
                "agent version that wrote it, or move the file away to forget it"
            )
        fields = {key: value for key, value in data.items() if key != "schema"}
        try:
            return _STATE.validate_python(fields)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise StateFileError(
                f"{source}: field {where!r}: {first['msg']}; repair it or move the file away to forget "
                "the canary (the target and registry are left as they are)"
            ) from exc


_STATE: pydantic.TypeAdapter[CanaryState] = pydantic.TypeAdapter(CanaryState)
ACTIONS: pydantic.TypeAdapter[tuple[CanaryAction, ...]] = pydantic.TypeAdapter(tuple[CanaryAction, ...])


class StateFileError(ValueError):
    """The state file cannot be read back; the message names the file, the field and the fix."""


def save(path: pathlib.Path, state: CanaryState) -> None:
    """Write ``state`` so a reader (or a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(state.to_json(), indent=2, sort_keys=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        pathlib.Path(partial).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a power cut
    finally:
        os.close(directory)


def load(path: pathlib.Path) -> CanaryState | None:
    """The saved state, or None when no canary was ever started here."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path} is not valid JSON ({exc}); move it away to forget the canary") from exc
    return CanaryState.from_json(data, str(path))


class StateStore(Protocol):
    """Where the controller keeps its one ``CanaryState``; ``save`` returns once it is durable."""

    def load(self) -> CanaryState | None: ...

    def save(self, state: CanaryState) -> None: ...


@dataclasses.dataclass(frozen=True)
class FileStateStore:
    """The state in one JSON file (``save`` / ``load`` above): a single agent's store."""

    path: pathlib.Path

    def load(self) -> CanaryState | None:
        return load(self.path)

    def save(self, state: CanaryState) -> None:
        save(self.path, state)

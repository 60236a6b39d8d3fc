"""Incidents: one per (model, detector family, feature group), with hysteresis and flapping control.

An incident moves ``closed -> pending -> open -> closed``:

* ``pending``: some drifted windows seen, fewer than ``raise_after`` in a row (no notification);
* ``open``: ``raise_after`` drifted windows in a row (``critical_raise_after`` when the window is
  critical), notified once; later drifted windows UPDATE it silently unless severity escalates;
* ``closed``: ``clear_after`` clean windows in a row; a RESOLVE goes out.

Each opening starts a new *epoch*; idempotency keys are built from incident id, epoch and
action kind, so replaying the same windows after a restart produces the same keys.

Flapping: an incident opened more than ``max_opens`` times within ``window_s`` is marked
flapping, held open (it does not close, so it cannot re-open and re-notify) and notified once.
It closes when it is clean for ``clear_after`` windows and its last opening is older than
``window_s``.

Everything here is plain data and pure functions; the state is JSON-serialisable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from actions.vocabulary import Severity

Status = Literal["closed", "pending", "open"]
# What one window did to an incident; the decision and the audit log report it.
Event = Literal[
    "none", "pending", "opened", "updated", "escalated", "flapping", "held", "resolved", "insufficient"
]


@dataclasses.dataclass(frozen=True)
class Hysteresis:
    raise_after: int
    clear_after: int
    critical_raise_after: int
    strong_raise_after: int
    material_raise_after: int
    max_opens: int
    flapping_window_s: float


@dataclasses.dataclass
class IncidentState:
    incident_id: str
    model: str
    family: str
    group: str
    status: Status = "closed"
    epoch: int = 0
    severity: Severity = Severity.NONE
    notified_severity: Severity = Severity.NONE
    drift_streak: int = 0
    clean_streak: int = 0
    # Windows since this episode began (first drifted window after being closed); the
    # sudden-vs-gradual rule reads ``severe_at_window`` against it.
    episode_windows: int = 0
    severe_at_window: int | None = None
    opened_at: float | None = None
    updated_at: float | None = None
    model_version: str | None = None
    rule_id: str | None = None
    flapping: bool = False
    open_history: list[float] = dataclasses.field(default_factory=list)
    # Action kinds issued in the current epoch: one remediation of a kind per epoch, and a
    # RESOLVE only where someone was notified.
    actions_taken: list[str] = dataclasses.field(default_factory=list)
    # Remediation kinds planned in this epoch but held back while a data-quality incident explains
    # the drift; issued once it no longer does and the drift goes on.
    held: list[str] = dataclasses.field(default_factory=list)
    # Drifted windows in a row since nothing explains the drift any more: the held kinds go out
    # when it reaches the rule's raise_after (the drift goes on by itself, not on broken data
    # still in flight, e.g. label windows that lag the fix).
    unexplained_streak: int = 0
    # The model version this incident is kept for while a canary's split serves two versions
    # (None: every version's windows count, the usual case).
    split_version: str | None = None
    # ... and the model's incident it continues as once that version serves alone again.
    model_incident_id: str | None = None

    def copy(self) -> IncidentState:
        """An independent copy (its lists are its own): what ``to_json``/``from_json`` would give,
        without the round trip, which cost the policy more than judging a window of 200 features."""
        return dataclasses.replace(
            self,
            open_history=list(self.open_history),
            actions_taken=list(self.actions_taken),
            held=list(self.held),
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["severity"] = self.severity.value
        out["notified_severity"] = self.notified_severity.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentState:
        fields = dict(data)
        fields["severity"] = Severity(fields.get("severity", "none"))
        fields["notified_severity"] = Severity(fields.get("notified_severity", "none"))
        fields["open_history"] = [float(t) for t in fields.get("open_history", [])]
        fields["actions_taken"] = [str(k) for k in fields.get("actions_taken", [])]
        fields["held"] = [str(k) for k in fields.get("held", [])]
        return cls(**fields)


def incident_id(model: str, family: str, group: str, segment: Mapping[str, str] | None = None) -> str:
    """Readable and stable: ``fraud/data_drift/all`` or ``fraud/latency/all@region=eu``."""
    base_id = f"{model}/{family}/{group}"
    if segment:
        return base_id + "@" + ",".join(f"{key}={segment[key]}" for key in sorted(segment))
    return base_id


def action_key(incident: IncidentState, kind: str, qualifier: str | None = None) -> str:
    """``<incident>#<epoch>/<kind>[/<qualifier>]``; the qualifier separates escalation notices."""
    key = f"{incident.incident_id}#{incident.epoch}/{kind}"
    return f"{key}/{qualifier}" if qualifier else key


@dataclasses.dataclass(frozen=True)
class Transition:
    event: Event
    # Severity newly worth notifying (opened or escalated); NONE when nothing is to be said.
    notify: Severity = Severity.NONE
    # Drifted windows in a row this window's evidence needs before the incident opens (0: n/a).
    needed: int = 0


def _opens_within(incident: IncidentState, now: float, window_s: float) -> int:
    return sum(1 for t in incident.open_history if t > now - window_s)


def step(
    incident: IncidentState,
    *,
    drifted: bool,
    severity: Severity,
    hysteresis: Hysteresis,
    now: float,
    model_version: str | None,
    strong: bool = False,
    material: bool = False,
) -> Transition:
    """Advance ``incident`` (mutated in place: callers pass their own copy) by one window.

    ``strong``: the window's evidence is overwhelming (``Rule.strong_p_value``); ``material``: a
    drifted unit's effect size alone grades the window moderate or worse (``Rule.effect_size``)."""
    incident.updated_at = now
    if drifted:
        return _drifted_window(
            incident, severity, hysteresis, now, model_version, strong=strong, material=material
        )
    return _clean_window(incident, hysteresis, now)


def _drifted_window(
    incident: IncidentState,
    severity: Severity,
    hysteresis: Hysteresis,
    now: float,
    model_version: str | None,
    *,
    strong: bool,
    material: bool,
) -> Transition:
    incident.drift_streak += 1
    incident.clean_streak = 0
    incident.episode_windows += 1
    incident.model_version = model_version or incident.model_version
    if severity.at_least(Severity.SEVERE) and incident.severe_at_window is None:
        incident.severe_at_window = incident.episode_windows
    if incident.status == "open":
        incident.severity = severity
        if severity.rank > incident.notified_severity.rank:
            incident.notified_severity = severity
            return Transition("escalated", notify=severity)
        return Transition("updated")
    needed = hysteresis.critical_raise_after if severity is Severity.CRITICAL else hysteresis.raise_after
    if strong and severity.at_least(Severity.MODERATE):
        needed = min(needed, hysteresis.strong_raise_after)
    if material and severity.at_least(Severity.MODERATE):
        needed = min(needed, hysteresis.material_raise_after)
    if incident.drift_streak < needed:
        incident.status = "pending"
        incident.severity = severity
        return Transition("pending", needed=needed)
    return dataclasses.replace(_open(incident, severity, hysteresis, now), needed=needed)


def _open(incident: IncidentState, severity: Severity, hysteresis: Hysteresis, now: float) -> Transition:
    incident.status = "open"
    incident.epoch += 1
    incident.opened_at = now
    incident.severity = severity
    incident.notified_severity = severity
    incident.actions_taken = []
    incident.held = []
    incident.unexplained_streak = 0
    incident.open_history = [t for t in incident.open_history if t > now - hysteresis.flapping_window_s]
    incident.open_history.append(now)
    if len(incident.open_history) > hysteresis.max_opens and not incident.flapping:
        incident.flapping = True
        return Transition("flapping", notify=severity)
    return Transition("opened", notify=severity)


def _clean_window(incident: IncidentState, hysteresis: Hysteresis, now: float) -> Transition:
    incident.clean_streak += 1
    incident.drift_streak = 0
    if incident.status == "closed":
        return Transition("none")
    incident.episode_windows += 1
    if incident.status == "pending":
        # Never raised: a clean window ends the episode without any notification.
        _reset_episode(incident)
        incident.status = "closed"
        return Transition("none")
    if incident.clean_streak < hysteresis.clear_after:
        return Transition("updated")
    if incident.flapping and _opens_within(incident, now, hysteresis.flapping_window_s) > 0:
        return Transition("held")
    incident.status = "closed"
    incident.flapping = False
    incident.held = []
    incident.unexplained_streak = 0
    _reset_episode(incident)
    return Transition("resolved")


def end(incident: IncidentState) -> None:
    """Close an incident no window can clear any more (its version no longer serves)."""
    incident.status = "closed"
    incident.flapping = False
    incident.held = []
    incident.unexplained_streak = 0
    incident.drift_streak = 0
    incident.clean_streak = 0
    _reset_episode(incident)


def _reset_episode(incident: IncidentState) -> None:
    incident.severity = Severity.NONE
    incident.notified_severity = Severity.NONE
    incident.episode_windows = 0
    incident.severe_at_window = None

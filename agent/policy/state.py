"""What ``decide`` remembers and what it reports, as plain data with a JSON form.

``PolicyState`` is carried from one window to the next; the agent checkpoints it as JSON, so a
restart that replays the same windows from the checkpoint gets the same decisions and
idempotency keys. ``Decision`` (with an ``IncidentReport`` per incident touched and the actions
``Suppressed``) is what one window decided, for the executor and the audit log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from actions import base as actions_base
from actions import vocabulary
from agent.policy import incidents
from agent.policy.incidents import IncidentState

# forced_done grows with every forced action and lives in the checkpoint: only the newest are kept.
MAX_FORCED_IDS_KEPT = 1000


@dataclasses.dataclass
class PolicyState:
    """Everything ``decide`` remembers between windows; ``to_json``/``from_json`` for checkpoints."""

    incidents: dict[str, IncidentState] = dataclasses.field(default_factory=dict)
    # Model version -> when the policy first saw it (the "new version" half of sudden-vs-gradual).
    versions_first_seen: dict[str, float] = dataclasses.field(default_factory=dict)
    # "<model>/<kind>" -> time of the last automatic remediation (cooldown).
    last_remediation: dict[str, float] = dataclasses.field(default_factory=dict)
    forced_done: list[str] = dataclasses.field(default_factory=list)
    windows: int = 0
    # Model -> times of the automatic rollbacks and retrains issued (the remediation budget).
    remediations: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    # Model -> the first counted change of the exhausted budget a human was paged about (once).
    budget_paged: dict[str, float] = dataclasses.field(default_factory=dict)
    # The model versions of the last RECENT_WINDOWS windows: two or more mean a canary's split
    # serves, and incidents are then kept per version (agent.policy.window).
    recent_versions: list[str] = dataclasses.field(default_factory=list)

    def copy(self) -> PolicyState:
        """An independent copy, equal to ``from_json(to_json())`` (a test checks), made directly."""
        return PolicyState(
            incidents={key: incident.copy() for key, incident in self.incidents.items()},
            versions_first_seen=dict(self.versions_first_seen),
            last_remediation=dict(self.last_remediation),
            forced_done=list(self.forced_done),
            windows=self.windows,
            remediations={model: list(times) for model, times in self.remediations.items()},
            budget_paged=dict(self.budget_paged),
            recent_versions=list(self.recent_versions),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "incidents": {key: value.to_json() for key, value in self.incidents.items()},
            "versions_first_seen": dict(self.versions_first_seen),
            "last_remediation": dict(self.last_remediation),
            "forced_done": list(self.forced_done),
            "windows": self.windows,
            "remediations": {model: list(times) for model, times in self.remediations.items()},
            "budget_paged": dict(self.budget_paged),
            "recent_versions": list(self.recent_versions),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyState:
        return cls(
            incidents={
                str(key): IncidentState.from_json(value)
                for key, value in dict(data.get("incidents", {})).items()
            },
            versions_first_seen={
                str(k): float(v) for k, v in dict(data.get("versions_first_seen", {})).items()
            },
            last_remediation={str(k): float(v) for k, v in dict(data.get("last_remediation", {})).items()},
            forced_done=[str(i) for i in data.get("forced_done", [])],
            windows=int(data.get("windows", 0)),
            remediations={
                str(model): [float(t) for t in times]
                for model, times in dict(data.get("remediations", {})).items()
            },
            budget_paged={str(k): float(v) for k, v in dict(data.get("budget_paged", {})).items()},
            recent_versions=[str(v) for v in data.get("recent_versions", [])],
        )

    def open_incidents(self) -> list[IncidentState]:
        return [i for i in self.incidents.values() if i.status == "open"]


@dataclasses.dataclass(frozen=True)
class IncidentReport:
    """What one window did to one incident, with the numbers that graded it."""

    incident_id: str
    rule_id: str
    event: incidents.Event
    status: incidents.Status
    severity: vocabulary.Severity
    window_severity: vocabulary.Severity
    epoch: int
    units: int
    drifted: int
    insufficient: int
    below_effect_size: int
    drifted_share: float | None
    max_score_ratio: float | None
    max_effect_size: float | None
    flapping: bool
    acknowledged: bool
    # Drifted windows in a row so far, and how many this window's evidence needs to open (0: n/a).
    streak: int = 0
    needed: int = 0
    family: str = ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["severity"] = self.severity.value
        out["window_severity"] = self.window_severity.value
        return out


@dataclasses.dataclass(frozen=True)
class Suppressed:
    kind: str
    incident_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Decision:
    time: float
    severity: vocabulary.Severity
    rule_id: str | None
    actions: tuple[actions_base.ActionRequest, ...]
    incidents: tuple[IncidentReport, ...]
    suppressed: tuple[Suppressed, ...]
    inputs: tuple[Mapping[str, Any], ...]
    unmatched: int
    overrides_in_force: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "decided_at": self.time,
            "severity": self.severity.value,
            "rule_id": self.rule_id,
            "actions": [
                {
                    "kind": a.kind.value,
                    "incident_id": a.incident_id,
                    "idempotency_key": a.idempotency_key,
                    "severity": a.severity,
                    "reason": a.reason,
                    "model_version": a.model_version,
                }
                for a in self.actions
            ],
            "incidents": [report.to_json() for report in self.incidents],
            "suppressed": [dataclasses.asdict(s) for s in self.suppressed],
            "inputs": [dict(i) for i in self.inputs],
            "unmatched": self.unmatched,
            "overrides": dict(self.overrides_in_force),
        }

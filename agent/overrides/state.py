"""The overrides in force: queries on one accepted override file, and which entry wins.

What each kind of entry does, in order of precedence (a higher one wins where two apply to the
same action):

1. **Expiry.** An entry whose ``until`` has passed stops applying at that instant, with no
   file change. ``mute`` and ``freeze`` require ``until`` (a forgotten mute hides the next
   real incident); elsewhere it is optional. Times must carry a timezone (``Z`` or ``+02:00``).
2. **dry_run.** Every action becomes a logged intention: handlers are asked what they would do
   (``dry_run=True``), nothing changes anywhere, the outcome is ``skipped``/``dry_run``.
3. **pins.** No action changes the served version of a pinned model: rollback, retrain and
   canary actions are skipped (``pinned``), operator-forced ones included - except a forced
   rollback onto the pinned version itself.
4. **force.** An operator-forced action runs once per ``id`` (even across restarts), bypassing
   hysteresis, cooldown, mute and freeze (but not dry_run or a pin).
5. **freeze.** A maintenance window: no automatic remediation (rollback, retrain, canary) for
   the matching models; notifications still go out.
6. **mute.** No notifications (alert, page, resolve) for matching results up to and including
   ``max_severity``; decisions are still made and audited, remediation is governed by freeze.
7. **acknowledge.** The incident is known to a human: no re-notification on updates or
   escalations, except an escalation to critical (it pages); its resolve is still sent.
8. **thresholds.** Replace a detector's threshold (per model/detector/feature) before the
   policy counts drifted windows; the detector's own verdict is recomputed from its score.
9. **canary.** Commands (pause/resume/abort/promote) per model, read by the canary controller.
10. **reset_budget.** A human resets a model's exhausted remediation budget: automatic version
    changes before ``at`` stop counting, so the policy may act again.

The executor asks ``skip_reason`` before each action (dry_run, pins, force, freeze, mute); the
policy reads force, acknowledge and thresholds when it decides; the canary controller reads
canary commands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from actions import base, vocabulary
from agent.overrides.schema import (
    Acknowledge,
    CanaryControl,
    DryRun,
    ForceAction,
    Freeze,
    Mute,
    OverrideFile,
    Pin,
    _dump,
    _sections,
    glob_matches,
)

NOTIFICATION_KINDS = frozenset({base.ActionKind.ALERT, base.ActionKind.PAGE, base.ActionKind.RESOLVE})
VERSION_CHANGING_KINDS = frozenset(
    {base.ActionKind.ROLLBACK, base.ActionKind.RETRAIN, base.ActionKind.CANARY}
)


@dataclasses.dataclass(frozen=True)
class Skip:
    """Why the executor must not run an action; ``dry_run`` still asks the handler for a description."""

    reason: Literal["dry_run", "pinned", "frozen", "muted"]
    entry: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class OverrideState:
    """One accepted override file; every query takes ``now`` so expiry needs no file change."""

    file: OverrideFile = dataclasses.field(default_factory=OverrideFile)
    content_hash: str = ""
    source: str = "(none)"

    def dry_run(self, now: float) -> DryRun | None:
        entry = self.file.dry_run
        return entry if entry is not None and entry.enabled and entry.active(now) else None

    def pin(self, model: str, now: float) -> Pin | None:
        return next((p for p in self.file.pins if p.active(now) and glob_matches(p.model, model)), None)

    def freeze(self, model: str, now: float) -> Freeze | None:
        return next((f for f in self.file.freeze if f.active(now) and glob_matches(f.model, model)), None)

    def mute(
        self,
        *,
        model: str,
        family: str,
        detector: str,
        feature: str | None,
        severity: vocabulary.Severity,
        now: float,
    ) -> Mute | None:
        for entry in self.file.mute:
            if (
                entry.active(now)
                and severity.rank <= entry.max_severity.rank
                and glob_matches(entry.model, model)
                and glob_matches(entry.family, family)
                and glob_matches(entry.detector, detector)
                and glob_matches(entry.feature, feature)
            ):
                return entry
        return None

    def threshold(self, *, model: str, detector: str, feature: str | None, now: float) -> float | None:
        for entry in self.file.thresholds:
            if (
                entry.active(now)
                and glob_matches(entry.model, model)
                and glob_matches(entry.detector, detector)
                and glob_matches(entry.feature, feature)
            ):
                return entry.threshold
        return None

    def forced(self, now: float) -> tuple[ForceAction, ...]:
        return tuple(entry for entry in self.file.force if entry.active(now))

    def acknowledged(self, incident_id: str, now: float) -> Acknowledge | None:
        return next((a for a in self.file.acknowledge if a.active(now) and a.incident == incident_id), None)

    def budget_reset_at(self, model: str, now: float) -> float | None:
        """The latest ``reset_budget`` time for ``model`` that has come (None: never reset)."""
        times = [
            entry.at.timestamp()
            for entry in self.file.reset_budget
            if entry.active(now) and glob_matches(entry.model, model) and entry.at.timestamp() <= now
        ]
        return max(times, default=None)

    def canary_command(self, model: str, now: float) -> CanaryControl | None:
        return next((c for c in self.file.canary if c.active(now) and glob_matches(c.model, model)), None)

    def skip_reason(self, request: base.ActionRequest, now: float) -> Skip | None:
        """The override, if any, that stops ``request`` from running, by the module's precedence."""
        dry = self.dry_run(now)
        if dry is not None:
            return Skip("dry_run", _dump(dry))
        if request.kind in VERSION_CHANGING_KINDS:
            pin = self.pin(request.model_name, now)
            onto_pin = (
                pin is not None
                and request.params.get("forced")
                and request.params.get("to_version") == pin.version
            )
            if pin is not None and not onto_pin:
                return Skip("pinned", _dump(pin))
        if request.params.get("forced"):
            return None
        if request.kind in VERSION_CHANGING_KINDS:
            frozen = self.freeze(request.model_name, now)
            if frozen is not None:
                return Skip("frozen", _dump(frozen))
        if request.kind in NOTIFICATION_KINDS:
            muted = self._mute_for_request(request, now)
            if muted is not None:
                return Skip("muted", _dump(muted))
        return None

    def _mute_for_request(self, request: base.ActionRequest, now: float) -> Mute | None:
        # The policy names what an incident is about in params; a request without them is matched
        # as dataset-level so only catch-all mutes apply.
        detectors = [str(d) for d in request.params.get("detectors", ())] or ["*"]
        features: list[str | None] = [
            None if f is None else str(f) for f in request.params.get("features", ())
        ] or [None]
        try:
            severity = vocabulary.Severity(request.severity)
        except ValueError:
            severity = vocabulary.Severity.CRITICAL
        family = str(request.params.get("family", "*"))
        # Muted only when every drifted signal of the incident is muted: one unmuted feature notifies.
        for detector in detectors:
            for feature in features:
                if (
                    self.mute(
                        model=request.model_name,
                        family=family,
                        detector=detector,
                        feature=feature,
                        severity=severity,
                        now=now,
                    )
                    is None
                ):
                    return None
        return self.mute(
            model=request.model_name,
            family=family,
            detector=detectors[0],
            feature=features[0],
            severity=severity,
            now=now,
        )

    def in_force(self, now: float) -> dict[str, int]:
        """Count of active entries per kind (the overrides_in_force gauge)."""
        return {
            "mute": sum(1 for e in self.file.mute if e.active(now)),
            "dry_run": 1 if self.dry_run(now) is not None else 0,
            "freeze": sum(1 for e in self.file.freeze if e.active(now)),
            "pin": sum(1 for e in self.file.pins if e.active(now)),
            "threshold": sum(1 for e in self.file.thresholds if e.active(now)),
            "force": sum(1 for e in self.file.force if e.active(now)),
            "acknowledge": sum(1 for e in self.file.acknowledge if e.active(now)),
            "canary": sum(1 for e in self.file.canary if e.active(now)),
        }

    def summary(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """The entries in force now, for the audit log (empty sections left out)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for section, entries in _sections(self.file).items():
            active = [_dump(e) for e in entries if e.active(now)]
            if active:
                out[section] = active
        return out

"""On-call overrides: a YAML file, re-read within seconds, that changes what the agent does.

See config/overrides.yaml for every key. What each kind of entry does, in order of precedence
(a higher one wins where two apply to the same action):

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

An invalid file is rejected with an error naming the field; the previous valid overrides stay
in force and the rejection is audited. Every accepted change is audited as a diff.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import prometheus_client
import pydantic
import yaml

from actions import base, vocabulary
from agent.observability import audit as audit_mod

LOG = logging.getLogger(__name__)

NOTIFICATION_KINDS = frozenset({base.ActionKind.ALERT, base.ActionKind.PAGE, base.ActionKind.RESOLVE})
VERSION_CHANGING_KINDS = frozenset(
    {base.ActionKind.ROLLBACK, base.ActionKind.RETRAIN, base.ActionKind.CANARY}
)


class _Entry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    reason: str | None = pydantic.Field(None, description="Why; shown in the audit log and notifications.")
    by: str | None = pydantic.Field(None, description="Who added the entry.")
    until: pydantic.AwareDatetime | None = pydantic.Field(
        None, description="Stops applying at this time (RFC 3339 with a timezone); null = until removed."
    )

    def active(self, now: float) -> bool:
        return self.until is None or self.until.timestamp() > now


class Mute(_Entry):
    model: str = pydantic.Field("*", description="Model name glob.")
    family: str = pydantic.Field("*", description="Detector family glob (data_drift, performance, ...).")
    detector: str = pydantic.Field("*", description="Detector name glob.")
    feature: str = pydantic.Field(
        "*", description="Feature name glob; '*' also matches dataset-level results."
    )
    max_severity: vocabulary.Severity = pydantic.Field(
        vocabulary.Severity.CRITICAL,
        description="Mute up to and including this severity; worse still notifies.",
    )
    until: pydantic.AwareDatetime = pydantic.Field(description="Required: when the mute ends.")


class DryRun(_Entry):
    enabled: bool = pydantic.Field(True, description="All actions become logged intentions.")


class Freeze(_Entry):
    model: str = pydantic.Field("*", description="Model name glob.")
    until: pydantic.AwareDatetime = pydantic.Field(description="Required: when the maintenance window ends.")


class Pin(_Entry):
    model: str = pydantic.Field(description="Model name (glob).")
    version: str = pydantic.Field(min_length=1, description="The version that must keep serving.")


class ThresholdOverride(_Entry):
    model: str = pydantic.Field("*", description="Model name glob.")
    detector: str = pydantic.Field(description="Detector name glob.")
    feature: str = pydantic.Field(
        "*", description="Feature name glob; '*' also matches dataset-level results."
    )
    threshold: float = pydantic.Field(allow_inf_nan=False, description="The threshold to use instead.")


class ForceAction(_Entry):
    id: str = pydantic.Field(min_length=1, description="Operator's id; the action runs once per id, ever.")
    action: base.ActionKind = pydantic.Field(description="Action kind: rollback, retrain, alert, page, ...")
    model: str | None = pydantic.Field(None, description="Model name; null = the model this agent watches.")
    to_version: str | None = pydantic.Field(None, description="Target version (rollback).")
    incident: str | None = pydantic.Field(None, description="Incident id to attach the action to, if any.")
    severity: vocabulary.Severity = pydantic.Field(
        vocabulary.Severity.SEVERE, description="Severity the action carries (alert/page sinks map it)."
    )


class Acknowledge(_Entry):
    incident: str = pydantic.Field(min_length=1, description="Incident id, e.g. fraud/data_drift/all.")


class CanaryControl(_Entry):
    model: str = pydantic.Field(description="Model name.")
    command: Literal["pause", "resume", "abort", "promote"] = pydantic.Field(
        description="What the canary does."
    )
    id: str | None = pydantic.Field(None, description="Operator's id, so a command is acted on once.")


class OverrideFile(pydantic.BaseModel):
    """The whole override file. Unknown keys are errors (a typo must not silently do nothing)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    mute: tuple[Mute, ...] = pydantic.Field((), description="Silence notifications.")
    dry_run: DryRun | None = pydantic.Field(None, description="true, or {enabled, until, reason}.")
    freeze: tuple[Freeze, ...] = pydantic.Field((), description="Maintenance windows: no auto remediation.")
    pins: tuple[Pin, ...] = pydantic.Field((), description="Versions nothing may move away from.")
    thresholds: tuple[ThresholdOverride, ...] = pydantic.Field((), description="Per-detector thresholds.")
    force: tuple[ForceAction, ...] = pydantic.Field((), description="Operator-forced actions, once per id.")
    acknowledge: tuple[Acknowledge, ...] = pydantic.Field((), description="Acknowledged incidents.")
    canary: tuple[CanaryControl, ...] = pydantic.Field((), description="Canary commands per model.")

    @pydantic.field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run_shorthand(cls, value: object) -> object:
        if isinstance(value, bool):
            return {"enabled": value}
        return value

    @pydantic.model_validator(mode="after")
    def _unique_ids(self) -> OverrideFile:
        seen: set[str] = set()
        for index, entry in enumerate(self.force):
            if entry.id in seen:
                raise ValueError(
                    f"force.{index}.id {entry.id!r} is used twice; every forced action needs its own id"
                )
            seen.add(entry.id)
        models: set[str] = set()
        for index, control in enumerate(self.canary):
            if control.model in models:
                raise ValueError(f"canary.{index}.model {control.model!r} has two commands; keep one")
            models.add(control.model)
        return self


def _glob(pattern: str, value: str | None) -> bool:
    if value is None:
        return pattern == "*"
    return fnmatch.fnmatchcase(value, pattern)


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
        return next((p for p in self.file.pins if p.active(now) and _glob(p.model, model)), None)

    def freeze(self, model: str, now: float) -> Freeze | None:
        return next((f for f in self.file.freeze if f.active(now) and _glob(f.model, model)), None)

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
                and _glob(entry.model, model)
                and _glob(entry.family, family)
                and _glob(entry.detector, detector)
                and _glob(entry.feature, feature)
            ):
                return entry
        return None

    def threshold(self, *, model: str, detector: str, feature: str | None, now: float) -> float | None:
        for entry in self.file.thresholds:
            if (
                entry.active(now)
                and _glob(entry.model, model)
                and _glob(entry.detector, detector)
                and _glob(entry.feature, feature)
            ):
                return entry.threshold
        return None

    def forced(self, now: float) -> tuple[ForceAction, ...]:
        return tuple(entry for entry in self.file.force if entry.active(now))

    def acknowledged(self, incident_id: str, now: float) -> Acknowledge | None:
        return next((a for a in self.file.acknowledge if a.active(now) and a.incident == incident_id), None)

    def canary_command(self, model: str, now: float) -> CanaryControl | None:
        return next((c for c in self.file.canary if c.active(now) and _glob(c.model, model)), None)

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


def _dump(entry: pydantic.BaseModel) -> dict[str, Any]:
    return entry.model_dump(mode="json", exclude_unset=True)


def _sections(file: OverrideFile) -> dict[str, tuple[_Entry, ...]]:
    return {
        "mute": file.mute,
        "dry_run": (file.dry_run,) if file.dry_run is not None else (),
        "freeze": file.freeze,
        "pins": file.pins,
        "thresholds": file.thresholds,
        "force": file.force,
        "acknowledge": file.acknowledge,
        "canary": file.canary,
    }


def diff(old: OverrideFile, new: OverrideFile) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Entries added and removed per section (an edited entry shows as removed + added)."""
    changes: dict[str, dict[str, list[dict[str, Any]]]] = {}
    old_sections, new_sections = _sections(old), _sections(new)
    for section in old_sections:
        before = [_dump(e) for e in old_sections[section]]
        after = [_dump(e) for e in new_sections[section]]
        added = [e for e in after if e not in before]
        removed = [e for e in before if e not in after]
        if added or removed:
            changes[section] = {"added": added, "removed": removed}
    return changes


class OverrideError(ValueError):
    """The override file is invalid; the message names the field and the fix."""


def parse(text: str, source: str) -> OverrideFile:
    """Validate override YAML text; raises ``OverrideError`` naming each bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OverrideError(f"override file {source} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OverrideError(
            f"override file {source} must hold a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return OverrideFile.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = [f"invalid override file {source}:"]
        for item in exc.errors():
            field = ".".join(str(part) for part in item["loc"]) or "(root)"
            lines.append(f"  {field}: {item['msg']}")
        lines.append("Fix the named fields (every key is documented in config/overrides.yaml).")
        raise OverrideError("\n".join(lines)) from exc


class OverrideWatcher:
    """Re-reads the override file; ``poll()`` now, ``maybe_poll()`` when the interval has passed.

    The content hash decides whether anything changed (mtime alone misses same-second edits and
    ConfigMap symlink swaps). ``start()`` runs ``poll`` in a daemon thread every interval.
    """

    def __init__(
        self,
        path: pathlib.Path,
        *,
        audit: audit_mod.AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._path = path
        self._audit = audit
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._state = OverrideState()
        self._last_poll: float | None = None
        self._rejected_hash: str | None = None
        self._active_keys: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._failures: prometheus_client.Counter | None = None
        if registry is not None:
            self._failures = prometheus_client.Counter(
                "drift_agent_override_reload_failures",
                "Override file versions rejected as invalid (the previous one stays in force).",
                registry=registry,
            )

    @property
    def state(self) -> OverrideState:
        with self._lock:
            return self._state

    def maybe_poll(self) -> bool:
        now = self._clock()
        if self._last_poll is not None and now - self._last_poll < self._interval_s:
            return False
        return self.poll()

    def poll(self) -> bool:
        """Read the file now; returns True when the overrides in force changed."""
        now = self._clock()
        self._last_poll = now
        changed = self._reload(now)
        self._audit_expiries(now)
        return changed

    def _reload(self, now: float) -> bool:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            self._reject(f"cannot read override file {self._path}: {exc.strerror}", None)
            return False
        digest = hashlib.sha256(raw).hexdigest()
        current = self.state
        if digest in (current.content_hash, self._rejected_hash):
            return False
        try:
            parsed = parse(raw.decode("utf-8", errors="replace"), str(self._path))
        except OverrideError as exc:
            self._reject(str(exc), digest)
            return False
        new_state = OverrideState(file=parsed, content_hash=digest, source=str(self._path))
        changes = diff(current.file, parsed)
        with self._lock:
            self._state = new_state
        self._rejected_hash = None
        self.last_error = None
        if changes and self._audit is not None:
            self._audit.record(
                audit_mod.OVERRIDE_CHANGE, path=str(self._path), sha256=digest, changes=changes
            )
        if changes:
            LOG.info("override file %s changed: %s", self._path, ", ".join(sorted(changes)))
        return bool(changes)

    def _reject(self, error: str, digest: str | None) -> None:
        self._rejected_hash = digest
        self.last_error = error
        LOG.error("%s (the previous overrides stay in force)", error)
        if self._failures is not None:
            self._failures.inc()
        if self._audit is not None:
            self._audit.record(audit_mod.OVERRIDE_REJECTED, path=str(self._path), error=error)

    def _audit_expiries(self, now: float) -> None:
        active: set[str] = set()
        expired: dict[str, list[dict[str, Any]]] = {}
        for section, entries in _sections(self.state.file).items():
            for entry in entries:
                key = section + json.dumps(_dump(entry), sort_keys=True)
                if entry.active(now):
                    active.add(key)
                elif key in self._active_keys:
                    expired.setdefault(section, []).append(_dump(entry))
        self._active_keys = active
        if expired and self._audit is not None:
            self._audit.record(audit_mod.OVERRIDE_CHANGE, path=str(self._path), changes={"expired": expired})

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="override-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a watcher bug must not silently end hot reload
                LOG.exception("override watcher poll failed; retrying")
            self._stop.wait(self._interval_s)

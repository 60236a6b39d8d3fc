"""The override file's schema: its entries, ``parse`` (YAML text -> ``OverrideFile``) and ``diff``.

See config/overrides.yaml for every key. Validation is strict because an override that does
nothing by mistake is worse than a rejected file: unknown keys are errors (a typo must not
silently do nothing), ``mute`` and ``freeze`` require ``until`` (a forgotten mute hides the
next real incident) and times must carry a timezone. What each kind of entry does, and which
wins where two apply, is in ``agent.overrides.state``; re-reading the file is
``agent.overrides.watcher``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

import pydantic
import yaml

from actions import base, vocabulary


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


class BudgetReset(_Entry):
    model: str = pydantic.Field("*", description="Model name glob.")
    at: pydantic.AwareDatetime = pydantic.Field(
        description="Automatic version changes before this time no longer count against the model's "
        "remediation budget (policy remediation.budget): acting resumes."
    )


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
    reset_budget: tuple[BudgetReset, ...] = pydantic.Field(
        (), description="A human's reset of a model's exhausted remediation budget."
    )

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


def glob_matches(pattern: str, value: str | None) -> bool:
    """Glob match; no value (a dataset-level result has no feature) matches only ``*``.

    The policy file's rules match the same way, so they use this too.
    """
    if value is None:
        return pattern == "*"
    # The policy judges every unit of every window against its rules (hundreds per window with
    # wide records): most patterns are "*" or a plain name, which need no regex.
    if pattern == "*":
        return True
    if not _GLOB_CHARS.intersection(pattern):
        return value == pattern
    return fnmatch.fnmatchcase(value, pattern)


_GLOB_CHARS = frozenset("*?[")


# _dump and _sections serve state and watcher too, so diffs, audit records and expiry keys all
# see an entry the same way.
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
        "reset_budget": file.reset_budget,
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
    except Exception as exc:
        # PyYAML's constructors let out what the calls they make raise: "until: 2030-02-30" and
        # an offset of +25:00 (ValueError from datetime), "!!int x" (ValueError), "!!bool x"
        # (KeyError), "!!timestamp x" (AttributeError), deep nesting (RecursionError).
        raise OverrideError(f"override file {source} is not valid YAML: {type(exc).__name__}: {exc}") from exc
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

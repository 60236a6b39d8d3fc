"""What one incident notification says, independent of where it goes.

The policy describes an incident in ``ActionRequest.params`` (names documented in the package
docstring); ``from_request`` turns that into a frozen ``Notification`` and names the param and
the fix when something is malformed, so bad input fails one action, never the loop.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

from actions import base
from actions.vocabulary import Severity


class Event(enum.StrEnum):
    TRIGGER = "trigger"  # a new incident
    UPDATE = "update"  # same incident, new facts (e.g. escalation); receivers dedup on incident_id
    RESOLVE = "resolve"  # the condition cleared
    CHANGE = "change"  # something was changed (rollback, deploy): informational, not an incident


class NotificationError(ValueError):
    """An ``ActionRequest`` that cannot become a notification; the message names the param."""


@dataclasses.dataclass(frozen=True)
class DriftItem:
    """One drifted signal: which feature, which detector, and how far past its threshold."""

    feature: str | None
    detector: str
    score: float
    threshold: float
    p_value: float | None = None
    effect_size: float | None = None
    higher_is_drift: bool = True

    @property
    def ratio(self) -> float:
        """How far past the threshold, >1 meaning drift on either kind of score (p-values invert)."""
        numerator, denominator = (
            (self.score, self.threshold) if self.higher_is_drift else (self.threshold, self.score)
        )
        if math.isnan(numerator) or math.isnan(denominator):
            return math.inf
        if denominator == 0:
            return math.inf
        return abs(numerator / denominator)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "detector": self.detector,
            "score": json_number(self.score),
            "threshold": json_number(self.threshold),
            "p_value": json_number(self.p_value),
            "effect_size": json_number(self.effect_size),
            "higher_is_drift": self.higher_is_drift,
        }


def json_number(value: float | None) -> float | str | None:
    """Strict JSON has no NaN/inf; receivers would reject the whole body, so spell them out."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


@dataclasses.dataclass(frozen=True)
class Links:
    dashboard: str | None = None
    runbook: str | None = None


@dataclasses.dataclass(frozen=True)
class Notification:
    """One message about one incident. ``incident_id`` is the dedup key at every receiver."""

    incident_id: str
    event: Event
    severity: Severity
    model_name: str
    model_version: str | None
    title: str
    summary: str
    drifted: tuple[DriftItem, ...] = ()
    since: float | None = None
    action: str | None = None
    override_hint: str | None = None
    links: Links = Links()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The action's idempotency key: the same when a notification is sent again after a crash
    # mid-delivery (delivery is at least once), so a receiver can drop the repeat.
    delivery_id: str | None = None

    def worst_first(self) -> tuple[DriftItem, ...]:
        """Drift items most-over-threshold first, so truncation drops the least important."""
        return tuple(sorted(self.drifted, key=lambda item: item.ratio, reverse=True))

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "event": self.event.value,
            "severity": self.severity.value,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "title": self.title,
            "summary": self.summary,
            "drifted": [item.to_json() for item in self.drifted],
            "since": self.since,
            "action": self.action,
            "override_hint": self.override_hint,
            "links": {"dashboard": self.links.dashboard, "runbook": self.links.runbook},
            "labels": dict(self.labels),
            "delivery_id": self.delivery_id,
        }


_KIND_DEFAULT_EVENT = {
    base.ActionKind.ALERT: Event.TRIGGER,
    base.ActionKind.PAGE: Event.TRIGGER,
    base.ActionKind.RESOLVE: Event.RESOLVE,
}


def parse_severity(value: object, field: str) -> Severity:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Severity(value.lower())
    except ValueError:
        valid = ", ".join(s.value for s in Severity)
        raise NotificationError(f"{field}: got {value!r}; use one of {valid}") from None


def from_request(
    request: base.ActionRequest,
    *,
    override_hint_template: str | None = None,
    dashboard_url_template: str | None = None,
    runbook_url: str | None = None,
) -> Notification:
    """Build the notification an ALERT, PAGE or RESOLVE request describes."""
    if request.kind not in _KIND_DEFAULT_EVENT:
        valid = ", ".join(kind.value for kind in _KIND_DEFAULT_EVENT)
        raise NotificationError(f"kind: got {request.kind.value!r}; alert sinks handle {valid}")
    params = request.params
    event = _event(params.get("event"), _KIND_DEFAULT_EVENT[request.kind], request.kind)
    severity = parse_severity(request.severity, "severity")
    placeholders = {
        "model": request.model_name,
        "model_version": request.model_version or "",
        "incident_id": request.incident_id,
        "severity": severity.value,
    }
    title = _optional_str(params, "title") or f"[{severity.value}] {request.model_name}: {request.reason}"
    links = _links(params.get("links"), dashboard_url_template, runbook_url, placeholders)
    hint = _optional_str(params, "override_hint")
    if hint is None and override_hint_template:
        hint = _format_template(override_hint_template, placeholders, "override_hint_template")
    return Notification(
        incident_id=request.incident_id,
        event=event,
        severity=severity,
        model_name=request.model_name,
        model_version=request.model_version,
        title=title,
        summary=_optional_str(params, "summary") or request.reason,
        drifted=_drifted(params.get("drifted", ())),
        since=_optional_number(params, "since"),
        action=_optional_str(params, "action"),
        override_hint=hint,
        links=links,
        labels=_labels(params.get("labels", {})),
        delivery_id=request.idempotency_key,
    )


def _event(value: object, default: Event, kind: base.ActionKind) -> Event:
    if value is None:
        return default
    try:
        event = Event(str(value))
    except ValueError:
        valid = ", ".join(e.value for e in Event)
        raise NotificationError(f"params.event: got {value!r}; use one of {valid}") from None
    if kind is base.ActionKind.RESOLVE and event is not Event.RESOLVE:
        raise NotificationError(f"params.event: got {value!r} on a RESOLVE action; omit it or use 'resolve'")
    return event


def _optional_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise NotificationError(f"params.{name}: got {type(value).__name__}; give a string")
    return value


def _optional_number(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise NotificationError(f"params.{name}: got {value!r}; give epoch seconds as a finite number")
    return float(value)


def _format_template(template: str, placeholders: Mapping[str, str], field: str) -> str:
    try:
        return template.format(**placeholders)
    except (KeyError, IndexError, ValueError) as exc:
        valid = ", ".join("{" + key + "}" for key in placeholders)
        raise NotificationError(
            f"{field}: cannot fill {template!r} ({exc}); placeholders are {valid}"
        ) from None


def _links(
    value: object, dashboard_template: str | None, runbook_url: str | None, placeholders: Mapping[str, str]
) -> Links:
    given: Mapping[str, Any] = {}
    if value is not None:
        if not isinstance(value, Mapping):
            raise NotificationError("params.links: give a mapping {dashboard: URL, runbook: URL}")
        given = value
    unknown = set(given) - {"dashboard", "runbook"}
    if unknown:
        raise NotificationError(f"params.links: unknown keys {sorted(unknown)}; use dashboard, runbook")
    dashboard = given.get("dashboard")
    if dashboard is None and dashboard_template:
        dashboard = _format_template(dashboard_template, placeholders, "dashboard_url_template")
    runbook = given.get("runbook", runbook_url)
    for name, link in (("dashboard", dashboard), ("runbook", runbook)):
        if link is not None and not isinstance(link, str):
            raise NotificationError(f"params.links.{name}: got {type(link).__name__}; give a URL string")
    return Links(dashboard=dashboard, runbook=runbook)


def _labels(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise NotificationError("params.labels: give a mapping of label name to string value")
    return {str(key): str(item) for key, item in value.items()}


def _drifted(value: object) -> tuple[DriftItem, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise NotificationError(
            "params.drifted: give a list of {feature, detector, score, threshold, p_value, effect_size} "
            "(DetectorResult.to_json() output works as is)"
        )
    items: list[DriftItem] = []
    for index, entry in enumerate(value):
        items.extend(_drift_items(entry, f"params.drifted[{index}]"))
    return tuple(items)


def _drift_items(entry: object, where: str) -> list[DriftItem]:
    """One entry, or its drifted per-feature details when it is a dataset-level verdict."""
    fields = entry if isinstance(entry, Mapping) else getattr(entry, "__dict__", None)
    if fields is None and dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
    if not isinstance(fields, Mapping):
        raise NotificationError(f"{where}: got {type(entry).__name__}; give a mapping or a DetectorResult")
    details = fields.get("details") or ()
    drifted_details = [d for d in details if _get(d, "drifted", True)]
    if drifted_details:
        out: list[DriftItem] = []
        for index, detail in enumerate(drifted_details):
            out.extend(_drift_items(detail, f"{where}.details[{index}]"))
        return out
    for required in ("detector", "score", "threshold"):
        if fields.get(required) is None:
            raise NotificationError(f"{where}.{required}: missing; every drifted entry needs it")
    feature = fields.get("feature")
    return [
        DriftItem(
            feature=None if feature is None else str(feature),
            detector=str(fields["detector"]),
            score=_number(fields["score"], f"{where}.score"),
            threshold=_number(fields["threshold"], f"{where}.threshold"),
            p_value=_maybe_number(fields.get("p_value"), f"{where}.p_value"),
            effect_size=_maybe_number(fields.get("effect_size"), f"{where}.effect_size"),
            higher_is_drift=bool(fields.get("higher_is_drift", True)),
        )
    ]


def _get(entry: object, name: str, default: object) -> object:
    if isinstance(entry, Mapping):
        return entry.get(name, default)
    return getattr(entry, name, default)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NotificationError(f"{where}: got {value!r}; give a number")
    # NaN/inf are reported as they are (a detector may legitimately produce inf); renderers print them.
    return float(value)


def _maybe_number(value: object, where: str) -> float | None:
    return None if value is None else _number(value, where)

"""PagerDuty Events API v2: trigger / resolve alert events and change events.

Alert events go to ``POST {base}/v2/enqueue``; ``dedup_key`` is the incident id, so an update
re-triggers the same PagerDuty alert and a resolve closes it. Change events (a rollback, a
deploy) go to ``POST {base}/v2/change/enqueue``: they appear on the service timeline and page
nobody. PagerDuty answers 202 when it accepted an event.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from actions import vocabulary
from actions.alerts import base, notification, secret_refs
from actions.alerts import transport as transport_mod

SUMMARY_CHARS = 1024  # payload.summary limit documented by PagerDuty
REDACTED = "<redacted>"

# PagerDuty knows four severities; ours has five levels (none/minor both are informational).
SEVERITY_MAP = {
    vocabulary.Severity.NONE: "info",
    vocabulary.Severity.MINOR: "info",
    vocabulary.Severity.MODERATE: "warning",
    vocabulary.Severity.SEVERE: "error",
    vocabulary.Severity.CRITICAL: "critical",
}


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _summary(text: str) -> str:
    if len(text) <= SUMMARY_CHARS:
        return text
    marker = "… [truncated]"
    return text[: SUMMARY_CHARS - len(marker)] + marker


def _links(n: notification.Notification) -> list[dict[str, str]]:
    links = []
    if n.links.dashboard:
        links.append({"href": n.links.dashboard, "text": "Dashboard"})
    if n.links.runbook:
        links.append({"href": n.links.runbook, "text": "Runbook"})
    return links


def _details(n: notification.Notification) -> dict[str, Any]:
    return {
        "incident_id": n.incident_id,
        "event": n.event.value,
        "severity": n.severity.value,
        "model_name": n.model_name,
        "model_version": n.model_version,
        "summary": n.summary,
        "drifted": [item.to_json() for item in n.worst_first()],
        "since": _iso(n.since) if n.since is not None else None,
        "action": n.action,
        "override_hint": n.override_hint,
        "labels": dict(n.labels),
    }


class PagerDutySink(base.HttpSink):
    def __init__(
        self,
        name: str,
        options: base.SinkOptions,
        *,
        routing_key: secret_refs.SecretRef,
        base_url: str,
        source: str,
        component: str | None,
        group: str | None,
        event_class: str,
    ) -> None:
        super().__init__(name, options)
        self._routing_key = routing_key
        self._base_url = base_url.rstrip("/")
        self._source = source
        self._component = component
        self._group = group
        self._event_class = event_class

    def payload(self, n: notification.Notification) -> Mapping[str, Any] | None:
        """The body with the routing key shown as ``<redacted>``; ``request`` puts the key in."""
        if n.event is notification.Event.CHANGE:
            change_payload: dict[str, Any] = {
                "summary": _summary(n.title),
                "source": self._source,
                "custom_details": _details(n),
            }
            if n.since is not None:
                change_payload["timestamp"] = _iso(n.since)
            return {"routing_key": REDACTED, "payload": change_payload, "links": _links(n)}
        if n.event is notification.Event.RESOLVE:
            return {"routing_key": REDACTED, "event_action": "resolve", "dedup_key": n.incident_id}
        payload: dict[str, Any] = {
            "summary": _summary(n.title),
            "source": self._source,
            "severity": SEVERITY_MAP[n.severity],
            "component": self._component or n.model_name,
            "group": self._group or n.model_name,
            "class": self._event_class,
            "custom_details": _details(n),
        }
        if n.since is not None:
            payload["timestamp"] = _iso(n.since)
        return {
            "routing_key": REDACTED,
            "event_action": "trigger",
            "dedup_key": n.incident_id,
            "payload": payload,
            "links": _links(n),
        }

    def request(self, n: notification.Notification, body: Mapping[str, Any]) -> transport_mod.HttpRequest:
        key = self._routing_key.read(self._runtime.environ).value
        path = "/v2/change/enqueue" if n.event is notification.Event.CHANGE else "/v2/enqueue"
        return transport_mod.HttpRequest(
            "POST",
            self._base_url + path,
            dict(base.JSON_HEADERS),
            base.json_body({**body, "routing_key": key}),
        )

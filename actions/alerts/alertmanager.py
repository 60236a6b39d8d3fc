"""Prometheus Alertmanager API v2: ``POST {url}/api/v2/alerts`` with a list of alerts.

Alertmanager identifies an alert by its whole label set: alertname, model, incident, severity
plus the notification's own labels. Everything that changes goes into annotations. Severity is
a label on purpose (routes match on it), so an escalation is a new alert: the sink remembers
the label sets it posted per incident and ends the superseded ones in the same post, and a
resolve ends every label set of the incident even if it carries fewer labels than its trigger.

A firing alert carries ``endsAt`` = now + ``firing_ttl_s``: Alertmanager resolves an alert on
its own once endsAt passes, so an agent that dies (and forgets what it posted) does not leave
alerts firing forever; an update re-arms it. A resolve posts ``endsAt`` = now. Change events
have no alert form and are skipped.
"""

from __future__ import annotations

import collections
import datetime
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from actions.alerts import base, notification, secret_refs
from actions.alerts import transport as transport_mod

DRIFT_ANNOTATION_ITEMS = 20  # annotations are for humans; the full list is on the dashboard
REMEMBERED_INCIDENTS = 10_000
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")

LabelSet = tuple[tuple[str, str], ...]


def rfc3339(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label_name(key: str) -> str:
    # Alertmanager rejects the whole post (HTTP 400) for one label name outside [a-zA-Z_][a-zA-Z0-9_]*.
    name = _INVALID_LABEL_CHARS.sub("_", key)
    return name if name and not name[0].isdigit() else "_" + name


class AlertmanagerSink(base.HttpSink):
    def __init__(
        self,
        name: str,
        options: base.SinkOptions,
        *,
        url: str,
        alertname: str,
        firing_ttl_s: float,
        bearer_token: secret_refs.SecretRef | None,
        now: Callable[[], float],
    ) -> None:
        super().__init__(name, options)
        self._url = url.rstrip("/") + "/api/v2/alerts"
        self._alertname = alertname
        self._firing_ttl_s = firing_ttl_s
        self._bearer_token = bearer_token
        self._now = now
        self._posted: collections.OrderedDict[str, set[LabelSet]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def labels(self, n: notification.Notification) -> dict[str, str]:
        return {
            **{_label_name(key): value for key, value in n.labels.items()},
            "alertname": self._alertname,
            "model": n.model_name,
            "severity": n.severity.value,
            "incident": n.incident_id,
        }

    def annotations(self, n: notification.Notification) -> dict[str, str]:
        annotations = {"summary": n.title, "description": n.summary}
        if n.model_version:
            annotations["model_version"] = n.model_version
        if n.drifted:
            items = n.worst_first()
            lines = [
                f"{item.feature or '(dataset)'} {item.detector}={item.score:.4g} "
                f"(threshold {item.threshold:.4g})"
                for item in items[:DRIFT_ANNOTATION_ITEMS]
            ]
            if len(items) > DRIFT_ANNOTATION_ITEMS:
                lines.append(f"... and {len(items) - DRIFT_ANNOTATION_ITEMS} more")
            annotations["drifted"] = "\n".join(lines)
        for key, value in (
            ("action", n.action),
            ("override", n.override_hint),
            ("runbook_url", n.links.runbook),
            ("dashboard", n.links.dashboard),
        ):
            if value:
                annotations[key] = value
        return annotations

    def payload(self, n: notification.Notification) -> Mapping[str, Any] | None:
        if n.event is notification.Event.CHANGE:
            return None
        now = self._now()
        current = self.labels(n)
        ending_now = n.event is notification.Event.RESOLVE
        alert: dict[str, Any] = {
            "labels": current,
            "annotations": self.annotations(n),
            "startsAt": rfc3339(n.since if n.since is not None else now),
            "endsAt": rfc3339(now if ending_now else now + self._firing_ttl_s),
        }
        if n.links.dashboard:
            alert["generatorURL"] = n.links.dashboard
        with self._lock:
            earlier = self._posted.get(n.incident_id, set())
        superseded = [
            {"labels": dict(labels), "annotations": alert["annotations"], "endsAt": rfc3339(now)}
            for labels in sorted(earlier)
            if dict(labels) != current
        ]
        return {"alerts": [alert, *superseded]}

    def delivered(self, n: notification.Notification, body: Mapping[str, Any]) -> None:
        with self._lock:
            if n.event is notification.Event.RESOLVE:
                self._posted.pop(n.incident_id, None)
                return
            self._posted[n.incident_id] = {tuple(sorted(self.labels(n).items()))}
            self._posted.move_to_end(n.incident_id)
            while len(self._posted) > REMEMBERED_INCIDENTS:
                self._posted.popitem(last=False)

    def request(self, n: notification.Notification, body: Mapping[str, Any]) -> transport_mod.HttpRequest:
        headers = dict(base.JSON_HEADERS)
        if self._bearer_token is not None:
            headers["Authorization"] = "Bearer " + self._bearer_token.read(self._runtime.environ).value
        # The API takes a bare list; ``payload`` wraps it only so every preview is a mapping.
        return transport_mod.HttpRequest("POST", self._url, headers, base.json_body(list(body["alerts"])))

"""Against a real Alertmanager: post, see it active, resolve, and get its grouped webhook."""

from __future__ import annotations

import json
import pathlib
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import prometheus_client
import pytest

from actions import base as actions_base
from actions.alerts import base, notification
from tests.infra import alertmanager as alertmanager_infra
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        alertmanager_infra.binary() is None,
        reason=f"prometheus-alertmanager is not installed; {alertmanager_infra.INSTALL_HINT}",
    ),
]

WAIT_S = 20.0
T = TypeVar("T")


@pytest.fixture
def alertmanager(
    receiver: receiver_mod.Receiver, tmp_path: pathlib.Path
) -> Iterator[alertmanager_infra.Alertmanager]:
    with alertmanager_infra.running(tmp_path / "am", receiver.url + "/am-webhook") as server:
        yield server


@pytest.fixture
def sink(alertmanager: alertmanager_infra.Alertmanager) -> base.AlertSink:
    # Real clocks: Alertmanager compares endsAt with its own clock.
    _, sinks = samples.build(
        [{"name": "am", "type": "alertmanager", "url": alertmanager.url}],
        base.Runtime(environ={}),
        prometheus_client.CollectorRegistry(),
    )
    return sinks["am"]


def _eventually(probe: Callable[[], T | None], what: str) -> T:
    # Polls a real server's state; the bound is for failure only, a pass returns at once.
    deadline = time.monotonic() + WAIT_S
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _active(server: alertmanager_infra.Alertmanager) -> list[dict[str, Any]]:
    url = f"{server.url}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    with urllib.request.urlopen(url, timeout=5) as response:
        alerts: list[dict[str, Any]] = json.load(response)
    return alerts


def _incidents(alerts: list[dict[str, Any]]) -> dict[str, str]:
    return {a["labels"]["incident"]: a["labels"]["severity"] for a in alerts}


def _webhook_with(receiver: receiver_mod.Receiver, status: str, count: int) -> dict[str, Any] | None:
    for recorded in list(receiver.requests):
        body: dict[str, Any] = recorded.json()
        if body["status"] == status and len(body["alerts"]) == count:
            return body
    return None


def _send(
    sink: base.AlertSink, kind: actions_base.ActionKind, incident: str, **params: Any
) -> base.SinkResult:
    request = samples.action_request(kind, incident_id=incident, **{**samples.standard_params(), **params})
    return sink.send(notification.from_request(request))


def test_post_active_resolve_and_grouped_webhook(
    alertmanager: alertmanager_infra.Alertmanager, sink: base.AlertSink, receiver: receiver_mod.Receiver
) -> None:
    alert, resolve = actions_base.ActionKind.ALERT, actions_base.ActionKind.RESOLVE
    assert _send(sink, alert, "fraud-model/data_drift/amount").status is base.SinkStatus.SENT
    assert _send(sink, alert, "fraud-model/data_drift/country").status is base.SinkStatus.SENT

    active = _eventually(
        lambda: _active(alertmanager) if len(_active(alertmanager)) == 2 else None, "2 alerts"
    )
    assert _incidents(active) == {
        "fraud-model/data_drift/amount": "severe",
        "fraud-model/data_drift/country": "severe",
    }
    first = active[0]
    assert first["status"]["state"] == "active"
    assert first["labels"]["alertname"] == "ModelDriftIncident" and first["labels"]["model"] == "fraud-model"
    assert first["annotations"]["summary"] == "[severe] fraud-model: data drift on 2 features"
    assert first["generatorURL"] == "https://grafana.example/d/drift"

    # Alertmanager groups both incidents of the model into one notification to its webhook.
    firing = _eventually(lambda: _webhook_with(receiver, "firing", 2), "a grouped firing webhook")
    assert firing["groupLabels"] == {"alertname": "ModelDriftIncident", "model": "fraud-model"}
    assert {a["labels"]["incident"] for a in firing["alerts"]} == set(_incidents(active))

    assert _send(sink, resolve, "fraud-model/data_drift/amount").status is base.SinkStatus.SENT
    remaining = _eventually(
        lambda: _active(alertmanager) if len(_active(alertmanager)) == 1 else None, "1 alert"
    )
    assert _incidents(remaining) == {"fraud-model/data_drift/country": "severe"}

    assert _send(sink, resolve, "fraud-model/data_drift/country").status is base.SinkStatus.SENT
    _eventually(lambda: [] if not _active(alertmanager) else None, "no active alerts")
    resolved = _eventually(lambda: _webhook_with(receiver, "resolved", 2), "a resolved webhook")
    assert {a["status"] for a in resolved["alerts"]} == {"resolved"}


def test_escalation_leaves_only_the_higher_severity_active(
    alertmanager: alertmanager_infra.Alertmanager, sink: base.AlertSink
) -> None:
    incident = "fraud-model/latency/p99"
    request = samples.action_request(actions_base.ActionKind.ALERT, incident_id=incident, severity="moderate")
    sink.send(notification.from_request(request))
    _eventually(
        lambda: True if _incidents(_active(alertmanager)) == {incident: "moderate"} else None, "moderate"
    )

    request = samples.action_request(
        actions_base.ActionKind.PAGE, incident_id=incident, severity="critical", event="update"
    )
    assert sink.send(notification.from_request(request)).status is base.SinkStatus.SENT
    _eventually(
        lambda: True if _incidents(_active(alertmanager)) == {incident: "critical"} else None, "critical only"
    )

    resolve = samples.action_request(
        actions_base.ActionKind.RESOLVE, incident_id=incident, severity="critical"
    )
    sink.send(notification.from_request(resolve))
    _eventually(lambda: True if not _active(alertmanager) else None, "no active alerts")

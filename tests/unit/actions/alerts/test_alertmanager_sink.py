"""Alertmanager API v2 wire format on a local receiver (the real server: tests/integration/alerting)."""

from __future__ import annotations

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, notification
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples


def test_firing_and_resolved_alert_bodies(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    _, sinks = samples.build(
        [{"name": "am", "type": "alertmanager", "url": receiver.url + "/", "firing_ttl_s": 600}],
        runtime,
        registry,
    )
    params = {**samples.standard_params(), "labels": {"team": "risk", "k8s.namespace": "serving"}}
    sinks["am"].send(notification.from_request(samples.action_request(**params)))
    clocks.now += 30
    sinks["am"].send(
        notification.from_request(
            samples.action_request(actions_base.ActionKind.RESOLVE, since=samples.SINCE)
        )
    )

    firing_request, resolve_request = receiver.requests
    assert (firing_request.method, firing_request.path) == ("POST", "/api/v2/alerts")
    assert firing_request.headers["content-type"] == "application/json; charset=utf-8"
    [firing] = firing_request.json()
    assert firing["labels"] == {
        "alertname": "ModelDriftIncident",
        "model": "fraud-model",
        "severity": "severe",
        "incident": "fraud-model/data_drift/amount",
        "team": "risk",
        "k8s_namespace": "serving",
    }
    assert firing["startsAt"] == "2023-11-14T21:56:40.000Z"
    assert firing["endsAt"] == "2023-11-14T22:23:20.000Z"  # wall now (22:13:20) + 600 s
    assert firing["generatorURL"] == "https://grafana.example/d/drift"
    annotations = firing["annotations"]
    assert annotations["summary"] == "[severe] fraud-model: data drift on 2 features"
    assert annotations["runbook_url"] == "https://runbooks.example/drift"
    assert annotations["action"] == "rollback to version 6 planned"
    assert annotations["drifted"].splitlines()[0].startswith("country chi2=0.001")

    # The resolve carries fewer labels than the trigger; the remembered label set is ended too.
    resolved_now, resolved_remembered = resolve_request.json()
    assert resolved_now["labels"] == {
        k: v for k, v in firing["labels"].items() if k not in ("team", "k8s_namespace")
    }
    assert resolved_remembered["labels"] == firing["labels"]
    assert (
        resolved_now["endsAt"] == resolved_remembered["endsAt"] == "2023-11-14T22:13:50.000Z"
    )  # now, 30 s on


def test_escalation_ends_the_alert_of_the_lower_severity(
    receiver: receiver_mod.Receiver, runtime: base.Runtime, registry: prometheus_client.CollectorRegistry
) -> None:
    _, sinks = samples.build([{"name": "am", "type": "alertmanager", "url": receiver.url}], runtime, registry)
    sinks["am"].send(notification.from_request(samples.action_request(severity="moderate")))
    sinks["am"].send(notification.from_request(samples.action_request(severity="critical", event="update")))

    first, second = (r.json() for r in receiver.requests)
    assert len(first) == 1
    critical, moderate = second
    assert critical["labels"]["severity"] == "critical"
    assert moderate["labels"] == first[0]["labels"]
    assert moderate["endsAt"] < critical["endsAt"]


def test_change_events_are_skipped(
    receiver: receiver_mod.Receiver, runtime: base.Runtime, registry: prometheus_client.CollectorRegistry
) -> None:
    _, sinks = samples.build([{"name": "am", "type": "alertmanager", "url": receiver.url}], runtime, registry)
    result = sinks["am"].send(notification.from_request(samples.action_request(event="change")))
    assert result.status is base.SinkStatus.SKIPPED
    assert receiver.requests == []

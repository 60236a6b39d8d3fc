"""PagerDuty Events API v2: trigger, resolve with the same dedup_key, change events."""

from __future__ import annotations

import pathlib

import prometheus_client
import pytest

from actions import base as actions_base
from actions.alerts import base, notification, pagerduty
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"


@pytest.fixture
def sink(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    registry: prometheus_client.CollectorRegistry,
    tmp_path: pathlib.Path,
) -> base.AlertSink:
    key_file = tmp_path / "routing-key"
    key_file.write_text(ROUTING_KEY + "\n")
    receiver.set_default(receiver_mod.Reply(202, b'{"status":"success","message":"Event processed"}'))
    _, sinks = samples.build(
        [
            {
                "name": "pd",
                "type": "pagerduty",
                "routing_key_file": str(key_file),
                "base_url": receiver.url,
                "group": "serving",
            }
        ],
        runtime,
        registry,
    )
    return sinks["pd"]


def test_trigger_body_field_by_field(receiver: receiver_mod.Receiver, sink: base.AlertSink) -> None:
    n = notification.from_request(samples.action_request(**samples.standard_params()))
    assert sink.send(n).status is base.SinkStatus.SENT

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    body = request.json()
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload", "links"}
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "fraud-model/data_drift/amount"
    payload = body["payload"]
    assert set(payload) == {
        "summary",
        "source",
        "severity",
        "component",
        "group",
        "class",
        "custom_details",
        "timestamp",
    }
    assert payload["summary"] == "[severe] fraud-model: data drift on 2 features"
    assert payload["source"] == "drift-agent"
    assert payload["severity"] == "error"
    assert payload["component"] == "fraud-model"
    assert payload["group"] == "serving"
    assert payload["class"] == "model-drift"
    assert payload["timestamp"] == "2023-11-14T21:56:40Z"
    details = payload["custom_details"]
    assert details["model_version"] == "7"
    assert details["action"] == "rollback to version 6 planned"
    assert [d["feature"] for d in details["drifted"]] == ["country", "amount"]
    assert details["labels"] == {"team": "risk", "namespace": "serving"}
    assert body["links"] == [
        {"href": "https://grafana.example/d/drift", "text": "Dashboard"},
        {"href": "https://runbooks.example/drift", "text": "Runbook"},
    ]


def test_summary_is_cut_to_1024_characters(receiver: receiver_mod.Receiver, sink: base.AlertSink) -> None:
    sink.send(notification.from_request(samples.action_request(title="x" * 5000)))
    summary = receiver.requests[0].json()["payload"]["summary"]
    assert len(summary) == pagerduty.SUMMARY_CHARS
    assert summary.endswith("[truncated]")


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("none", "info"),
        ("minor", "info"),
        ("moderate", "warning"),
        ("severe", "error"),
        ("critical", "critical"),
    ],
)
def test_severity_mapping(
    receiver: receiver_mod.Receiver, sink: base.AlertSink, severity: str, expected: str
) -> None:
    sink.send(notification.from_request(samples.action_request(severity=severity)))
    assert receiver.requests[0].json()["payload"]["severity"] == expected


def test_resolve_uses_the_same_dedup_key(receiver: receiver_mod.Receiver, sink: base.AlertSink) -> None:
    sink.send(notification.from_request(samples.action_request()))
    sink.send(notification.from_request(samples.action_request(actions_base.ActionKind.RESOLVE)))

    trigger, resolve = (r.json() for r in receiver.requests)
    assert receiver.requests[1].path == "/v2/enqueue"
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }


def test_change_event_goes_to_the_change_endpoint(
    receiver: receiver_mod.Receiver, sink: base.AlertSink
) -> None:
    request = samples.action_request(
        event="change",
        title="Rolled back fraud-model to version 6",
        since=samples.SINCE,
        action="rollback done",
    )
    assert sink.send(notification.from_request(request)).status is base.SinkStatus.SENT

    [recorded] = receiver.requests
    assert recorded.path == "/v2/change/enqueue"
    body = recorded.json()
    assert set(body) == {"routing_key", "payload", "links"}
    assert body["routing_key"] == ROUTING_KEY
    assert body["payload"]["summary"] == "Rolled back fraud-model to version 6"
    assert body["payload"]["source"] == "drift-agent"
    assert body["payload"]["timestamp"] == "2023-11-14T21:56:40Z"
    assert body["payload"]["custom_details"]["action"] == "rollback done"


def test_preview_never_shows_the_routing_key(sink: base.AlertSink) -> None:
    preview = sink.preview(notification.from_request(samples.action_request()))
    assert preview is not None
    assert preview["routing_key"] == "<redacted>"
    assert ROUTING_KEY not in repr(preview)

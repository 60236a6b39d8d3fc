"""Generic webhook: JSON body and an HMAC-SHA256 signature over timestamp + body."""

from __future__ import annotations

import hashlib
import hmac
import pathlib

import prometheus_client

from actions.alerts import base, notification, webhook
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

SECRET = "whsec-0123456789"


def test_body_and_signature_verify_by_recomputing(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "secret").write_text(SECRET)
    _, sinks = samples.build(
        [
            {
                "name": "hook",
                "type": "webhook",
                "url": receiver.url + "/in",
                "secret_file": str(tmp_path / "secret"),
            }
        ],
        runtime,
        registry,
    )
    n = notification.from_request(samples.action_request(**samples.standard_params()))
    assert sinks["hook"].send(n).status is base.SinkStatus.SENT

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/in")
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    timestamp = request.headers["x-drift-agent-timestamp"]
    assert timestamp == str(int(clocks.wall()))
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-drift-agent-signature"] == f"sha256={expected}"

    body = request.json()
    assert body["schema"] == "drift-agent.notification/v1"
    assert body["incident_id"] == "fraud-model/data_drift/amount"
    # A resend after a crash mid-delivery carries the same id: the receiver can drop the repeat.
    assert body["delivery_id"] == samples.action_request().idempotency_key
    assert (body["event"], body["severity"], body["model_version"]) == ("trigger", "severe", "7")
    assert body["since"] == samples.SINCE
    assert body["drifted"][0] == {
        "feature": "amount",
        "detector": "psi",
        "score": 0.42,
        "threshold": 0.1,
        "p_value": None,
        "effect_size": 0.21,
        "higher_is_drift": True,
    }
    assert body["links"] == {
        "dashboard": "https://grafana.example/d/drift",
        "runbook": "https://runbooks.example/drift",
    }

    now = clocks.wall()
    signature = request.headers["x-drift-agent-signature"]
    assert webhook.verify(SECRET.encode(), request.body, timestamp, signature, now=now)
    assert not webhook.verify(SECRET.encode(), request.body + b" ", timestamp, signature, now=now)
    assert not webhook.verify(b"other", request.body, timestamp, signature, now=now)
    # A replay later than the tolerance fails even with an untouched body and signature.
    assert not webhook.verify(SECRET.encode(), request.body, timestamp, signature, now=now + 301)
    # A fresh timestamp on an old signature fails: the timestamp is signed too.
    assert not webhook.verify(SECRET.encode(), request.body, str(int(now) + 60), signature, now=now + 60)


def test_non_finite_scores_are_spelled_out_not_sent_as_invalid_json(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    env["S"] = SECRET
    _, sinks = samples.build(
        [{"name": "hook", "type": "webhook", "url": receiver.url, "secret_env": "S"}], runtime, registry
    )
    n = notification.from_request(
        samples.action_request(drifted=[samples.drift_result("x", float("inf")).to_json()])
    )
    assert sinks["hook"].send(n).status is base.SinkStatus.SENT
    assert b"Infinity" not in receiver.requests[0].body
    assert receiver.requests[0].json()["drifted"][0]["score"] == "inf"

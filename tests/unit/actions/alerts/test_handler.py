"""AlertHandler: routing by kind, fan-out, dry-run, idempotent re-calls, bad requests."""

from __future__ import annotations

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, handler
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

Kind = actions_base.ActionKind
Status = actions_base.OutcomeStatus


def _handlers(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    data_owner_sinks: list[str] | None = None,
) -> dict[actions_base.ActionKind, handler.AlertHandler]:
    env.update({"SLACK_URL": receiver.url + "/slack", "PD_KEY": "pd-key", "HOOK_SECRET": "hook-secret"})
    alerting, _ = samples.build(
        [
            {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL"},
            {"name": "pd", "type": "pagerduty", "routing_key_env": "PD_KEY", "base_url": receiver.url},
            {"name": "hook", "type": "webhook", "url": receiver.url + "/hook", "secret_env": "HOOK_SECRET"},
        ],
        runtime,
        prometheus_client.CollectorRegistry(),
        alert_sinks=["slack", "hook"],
        page_sinks=["pd", "slack"],
        data_owner_sinks=data_owner_sinks,
    )
    return handler.build_handlers(alerting, registry=registry, runtime=runtime)


def _paths(receiver: receiver_mod.Receiver) -> list[str]:
    return sorted(r.path for r in receiver.requests)


def test_alert_page_and_resolve_reach_their_routes(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry)
    assert set(handlers) == {Kind.ALERT, Kind.PAGE, Kind.RESOLVE}
    assert all(h.kind is kind for kind, h in handlers.items())

    outcome = handlers[Kind.ALERT].handle(samples.action_request(Kind.ALERT), dry_run=False)
    assert outcome.status is Status.SUCCEEDED
    assert _paths(receiver) == ["/hook", "/slack"]
    assert [s["sink"] for s in outcome.details["sinks"]] == ["slack", "hook"]

    receiver.requests.clear()
    handlers[Kind.PAGE].handle(samples.action_request(Kind.PAGE, key="k-page"), dry_run=False)
    assert _paths(receiver) == ["/slack", "/v2/enqueue"]

    receiver.requests.clear()
    outcome = handlers[Kind.RESOLVE].handle(samples.action_request(Kind.RESOLVE, key="k-res"), dry_run=False)
    assert outcome.status is Status.SUCCEEDED
    assert _paths(receiver) == ["/hook", "/slack", "/v2/enqueue"]
    assert {r.json().get("event_action") for r in receiver.requests if r.path == "/v2/enqueue"} == {"resolve"}


def test_dry_run_sends_nothing_and_shows_bodies_without_secrets(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry)
    outcome = handlers[Kind.PAGE].handle(samples.action_request(Kind.PAGE), dry_run=True)

    assert outcome.status is Status.SKIPPED
    assert outcome.message == "dry-run: would notify pd, slack"
    assert receiver.requests == []
    assert set(outcome.details["previews"]) == {"pd", "slack"}
    assert "pd-key" not in repr(outcome) and receiver.url not in repr(outcome)


def test_calling_again_with_the_same_key_retries_only_the_failed_sink(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry)
    # PagerDuty rejects the first event for good (400); Slack takes it.
    receiver.script(receiver_mod.Reply(400, b'{"status":"invalid event"}'), path="/v2/")
    request = samples.action_request(Kind.PAGE, sinks=["pd", "slack"])
    first = handlers[Kind.PAGE].handle(request, dry_run=False)
    assert first.status is Status.FAILED
    assert first.message.startswith("not delivered to pd: http_4xx")
    assert _paths(receiver) == ["/slack", "/v2/enqueue"]

    receiver.requests.clear()
    second = handlers[Kind.PAGE].handle(request, dry_run=False)
    assert second.status is Status.SUCCEEDED
    assert _paths(receiver) == ["/v2/enqueue"]
    assert second.details["already_delivered"] == ["slack"]


def test_a_malformed_request_fails_the_action_naming_the_param(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry)
    bad = [
        (samples.action_request(severity="urgent"), "severity: got 'urgent'"),
        (
            samples.action_request(drifted=[{"feature": "a", "score": "high"}]),
            "params.drifted[0].detector: missing",
        ),
        (samples.action_request(sinks=["nope"]), "params.sinks: unknown sink names ['nope']"),
        (samples.action_request(since="yesterday"), "params.since: got 'yesterday'"),
        (samples.action_request(Kind.RESOLVE, event="trigger"), "params.event: got 'trigger' on a RESOLVE"),
    ]
    for request, expected in bad:
        outcome = handlers[request.kind].handle(request, dry_run=False)
        assert outcome.status is Status.FAILED
        assert expected in outcome.message, outcome.message
    assert receiver.requests == []


def test_a_sink_that_is_down_fails_alone(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry)
    env["SLACK_URL"] = "http://127.0.0.1:9/slack"  # discard port: refused
    outcome = handlers[Kind.PAGE].handle(samples.action_request(Kind.PAGE), dry_run=False)
    assert outcome.status is Status.FAILED
    results = {s["sink"]: s["status"] for s in outcome.details["sinks"]}
    assert results == {"pd": "sent", "slack": "failed"}
    assert _paths(receiver) == ["/v2/enqueue"]


def test_data_quality_goes_to_the_data_owner_and_other_incidents_keep_their_routes(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    handlers = _handlers(receiver, runtime, env, registry, data_owner_sinks=["hook"])
    quality = {"family": "quality", "incident_id": "fraud-model/quality/amount"}
    for kind in (Kind.ALERT, Kind.PAGE, Kind.RESOLVE):
        request = samples.action_request(kind, key=f"q-{kind.value}", **quality)
        assert handlers[kind].routed(request) == ["hook"]
    drift = samples.action_request(Kind.PAGE, key="d-page", family="data_drift")
    assert handlers[Kind.PAGE].routed(drift) == ["pd", "slack"]
    # A policy rule's own sinks come first.
    routed = samples.action_request(Kind.PAGE, key="r-page", family="quality", sinks=["pd"])
    assert handlers[Kind.PAGE].routed(routed) == ["pd"]
    outcome = handlers[Kind.PAGE].handle(
        samples.action_request(Kind.PAGE, key="q-sent", **quality), dry_run=False
    )
    assert outcome.status is Status.SUCCEEDED
    assert [r.path for r in receiver.requests] == ["/hook"]

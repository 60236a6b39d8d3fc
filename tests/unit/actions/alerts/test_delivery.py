"""Retries, Retry-After, the total time bound and the per-sink rate limit, over real HTTP."""

from __future__ import annotations

import random
import socket

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, delivery, notification, transport
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples


def _webhook(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    **extra: object,
) -> base.AlertSink:
    env["HOOK_SECRET"] = "s3cret"
    sink_config = {
        "name": "hook",
        "type": "webhook",
        "url": receiver.url + "/hook",
        "secret_env": "HOOK_SECRET",
    }
    _, sinks = samples.build([{**sink_config, **extra}], runtime, registry)
    return sinks["hook"]


def _notification(kind: actions_base.ActionKind = actions_base.ActionKind.ALERT) -> notification.Notification:
    return notification.from_request(samples.action_request(kind))


def test_a_500_then_200_takes_two_attempts(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    receiver.script(receiver_mod.Reply(500, b"boom"), receiver_mod.Reply(200))
    result = _webhook(receiver, runtime, env, registry).send(_notification())

    assert (result.status, result.attempts, result.http_status) == (base.SinkStatus.SENT, 2, 200)
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    # Full jitter: the one wait lies in [0, base_delay_s].
    assert len(clocks.sleeps) == 1 and 0 <= clocks.sleeps[0] <= 0.5
    assert registry.get_sample_value("drift_agent_sink_retries_total", {"sink": "hook"}) == 1.0
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_sent_total", {"sink": "hook", "event": "trigger"}
        )
        == 1
    )


def test_429_waits_as_long_as_retry_after_says(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    receiver.script(
        receiver_mod.Reply(429, b"rate_limited", (("Retry-After", "7"),)), receiver_mod.Reply(200)
    )
    result = _webhook(receiver, runtime, env, registry).send(_notification())

    assert (result.status, result.attempts) == (base.SinkStatus.SENT, 2)
    assert clocks.sleeps == [7.0]


def test_400_is_not_retried_and_reports_the_receivers_reason(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    receiver.script(receiver_mod.Reply(400, b"invalid_payload"))
    result = _webhook(receiver, runtime, env, registry).send(_notification())

    assert (result.status, result.attempts, result.http_status) == (base.SinkStatus.FAILED, 1, 400)
    assert result.reason == "http_4xx: HTTP 400: invalid_payload"
    assert len(receiver.requests) == 1 and clocks.sleeps == []
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_failed_total", {"sink": "hook", "reason": "http_4xx"}
        )
        == 1
    )


def test_attempts_are_bounded_and_backoff_grows_within_its_cap(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    receiver.set_default(receiver_mod.Reply(503, b"down"))
    retry = {"max_attempts": 5, "base_delay_s": 1.0, "max_delay_s": 3.0, "max_total_s": 1000.0}
    result = _webhook(receiver, runtime, env, registry, retry=retry).send(_notification())

    assert (result.status, result.attempts) == (base.SinkStatus.FAILED, 5)
    assert result.reason.startswith("http_5xx")
    assert len(receiver.requests) == 5
    caps = [1.0, 2.0, 3.0, 3.0]
    assert len(clocks.sleeps) == 4
    assert all(0 <= wait <= cap for wait, cap in zip(clocks.sleeps, caps, strict=True))
    assert registry.get_sample_value("drift_agent_sink_retries_total", {"sink": "hook"}) == 4


def test_a_refused_connection_is_retried_then_reported_without_the_url(
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env["HOOK_SECRET"] = "s3cret"
    env["HOOK_URL"] = f"http://127.0.0.1:{port}/hook?token=tok-123"
    _, sinks = samples.build(
        [
            {
                "name": "hook",
                "type": "webhook",
                "url_env": "HOOK_URL",
                "secret_env": "HOOK_SECRET",
                "retry": {"max_attempts": 3},
            }
        ],
        runtime,
        registry,
    )
    result = sinks["hook"].send(_notification())

    assert (result.status, result.attempts) == (base.SinkStatus.FAILED, 3)
    assert result.reason.startswith("network: connection_refused")
    assert "tok-123" not in result.reason
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_failed_total", {"sink": "hook", "reason": "network"}
        )
        == 1
    )


def test_the_whole_delivery_ends_within_max_total_s(clocks: receiver_mod.FakeClocks) -> None:
    calls: list[float] = []

    def slow_failing(request: transport.HttpRequest, timeout_s: float) -> transport.HttpResponse:
        calls.append(timeout_s)
        clocks.now += timeout_s  # the attempt used its whole timeout
        raise transport.TransportError("timeout")

    policy = delivery.RetryPolicy(
        max_attempts=20, base_delay_s=1.0, max_delay_s=4.0, timeout_s=5.0, max_total_s=12.0
    )
    outcome = delivery.deliver(
        transport.HttpRequest("POST", "http://127.0.0.1:9/", {}, b"{}"),
        transport=slow_failing,
        policy=policy,
        clocks=delivery.Clocks(clocks.monotonic, clocks.sleep, clocks.wall, random.Random(1)),
    )
    assert not outcome.accepted
    assert clocks.now <= 12.0
    # The last attempt only gets what is left of the bound as its timeout.
    assert calls[0] == 5.0 and calls[-1] < 5.0
    assert outcome.attempts == len(calls) < 20


def test_retry_after_beyond_the_bound_gives_up_at_once(clocks: receiver_mod.FakeClocks) -> None:
    def limited(request: transport.HttpRequest, timeout_s: float) -> transport.HttpResponse:
        return transport.HttpResponse(429, {"retry-after": "3600"})

    outcome = delivery.deliver(
        transport.HttpRequest("POST", "http://127.0.0.1:9/", {}, b"{}"),
        transport=limited,
        policy=delivery.RetryPolicy(max_total_s=30.0),
        clocks=delivery.Clocks(clocks.monotonic, clocks.sleep, clocks.wall, random.Random(1)),
    )
    assert (outcome.failure, outcome.attempts, clocks.sleeps) == ("http_429", 1, [])
    assert "would pass the 30 s bound" in outcome.detail


def test_retry_after_accepts_an_http_date() -> None:
    now = 1_700_000_000.0
    assert delivery.parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == 20.0
    assert delivery.parse_retry_after("120", now) == 120.0
    assert delivery.parse_retry_after("soon", now) is None
    assert delivery.parse_retry_after("-5", now) is None


def test_rate_limit_drops_beyond_the_burst_and_refills_with_time(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    clocks: receiver_mod.FakeClocks,
) -> None:
    sink = _webhook(receiver, runtime, env, registry, rate_limit={"per_minute": 6, "burst": 2})
    statuses = [sink.send(_notification()).status for _ in range(3)]
    assert statuses == [base.SinkStatus.SENT, base.SinkStatus.SENT, base.SinkStatus.RATE_LIMITED]
    # A resolve is never dropped by the bucket.
    assert sink.send(_notification(actions_base.ActionKind.RESOLVE)).status is base.SinkStatus.SENT
    clocks.now += 10.0  # 6 per minute: one token back every 10 s
    assert sink.send(_notification()).status is base.SinkStatus.SENT
    assert sink.send(_notification()).status is base.SinkStatus.RATE_LIMITED
    assert len(receiver.requests) == 4
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_failed_total", {"sink": "hook", "reason": "rate_limited"}
        )
        == 2
    )


def test_below_min_severity_is_skipped_and_so_is_its_resolve(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    sink = _webhook(receiver, runtime, env, registry, min_severity="severe")

    def send(kind: actions_base.ActionKind, severity: str, incident: str) -> base.SinkStatus:
        request = samples.action_request(kind, severity=severity, incident_id=incident)
        return sink.send(notification.from_request(request)).status

    alert, resolve = actions_base.ActionKind.ALERT, actions_base.ActionKind.RESOLVE
    # A moderate incident never reached this sink, so neither does its resolve.
    assert send(alert, "moderate", "m/a") is base.SinkStatus.SKIPPED
    assert send(resolve, "none", "m/a") is base.SinkStatus.SKIPPED
    assert receiver.requests == []
    # A critical one did; its resolve (severity "none" once cleared) follows it.
    assert send(alert, "critical", "m/b") is base.SinkStatus.SENT
    assert send(resolve, "none", "m/b") is base.SinkStatus.SENT
    # An incident the sink knows nothing of (e.g. after a restart) gets the resolve: better spare than stuck.
    assert send(resolve, "none", "m/c") is base.SinkStatus.SENT
    assert [r.json()["incident_id"] for r in receiver.requests] == ["m/b", "m/b", "m/c"]


def test_a_redirect_is_not_followed(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    receiver.script(receiver_mod.Reply(307, b"", (("Location", receiver.url + "/elsewhere"),)))
    result = _webhook(receiver, runtime, env, registry).send(_notification())
    assert (result.status, result.http_status, result.attempts) == (base.SinkStatus.FAILED, 307, 1)
    assert result.reason.startswith("http_3xx")
    assert [r.path for r in receiver.requests] == ["/hook"]

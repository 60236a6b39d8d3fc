"""Secrets come from env vars or files named in config, are re-read, and never reach logs."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import prometheus_client
import pytest

from actions import base as actions_base
from actions.alerts import base, handler
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

SLACK_TOKEN = "xoxSLACKTOKEN123"
PD_KEY = "pdROUTINGKEY456"
HMAC_SECRET = "hmacSECRET789"
HOOK_TOKEN = "hookTOKEN000"
AM_TOKEN = "amBEARER111"
SECRETS = (SLACK_TOKEN, PD_KEY, HMAC_SECRET, HOOK_TOKEN, AM_TOKEN)


def test_no_secret_reaches_a_log_line_or_an_outcome(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    tmp_path: pathlib.Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "pd").write_text(PD_KEY)
    (tmp_path / "am").write_text(AM_TOKEN)
    env.update(
        {
            "SLACK_URL": f"{receiver.url}/services/{SLACK_TOKEN}",
            "HOOK_URL": f"{receiver.url}/hook?token={HOOK_TOKEN}",
            "HOOK_SECRET": HMAC_SECRET,
        }
    )
    sinks: list[dict[str, Any]] = [
        {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL", "retry": {"max_attempts": 2}},
        {
            "name": "pd",
            "type": "pagerduty",
            "routing_key_file": str(tmp_path / "pd"),
            "base_url": receiver.url,
        },
        {"name": "hook", "type": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"},
        {
            "name": "am",
            "type": "alertmanager",
            "url": receiver.url,
            "bearer_token_file": str(tmp_path / "am"),
        },
    ]
    alerting, _ = samples.build(sinks, runtime, prometheus_client.CollectorRegistry())
    handlers = handler.build_handlers(alerting, registry=registry, runtime=runtime)
    outcomes = []

    outcomes.append(
        handlers[actions_base.ActionKind.ALERT].handle(samples.action_request(key="a"), dry_run=False)
    )
    receiver.set_default(receiver_mod.Reply(500, b"internal"))
    outcomes.append(
        handlers[actions_base.ActionKind.ALERT].handle(samples.action_request(key="b"), dry_run=False)
    )
    receiver.set_default(receiver_mod.Reply(400, b"bad"))
    outcomes.append(
        handlers[actions_base.ActionKind.PAGE].handle(samples.action_request(key="c"), dry_run=False)
    )
    outcomes.append(
        handlers[actions_base.ActionKind.PAGE].handle(samples.action_request(key="d"), dry_run=True)
    )
    env["SLACK_URL"] = f"http://127.0.0.1:9/services/{SLACK_TOKEN}"  # refused
    outcomes.append(
        handlers[actions_base.ActionKind.ALERT].handle(samples.action_request(key="e"), dry_run=False)
    )
    del env["HOOK_SECRET"]
    outcomes.append(
        handlers[actions_base.ActionKind.ALERT].handle(samples.action_request(key="f"), dry_run=False)
    )

    # The secrets did go out on the wire (so this test would see them if they leaked)...
    wire = b"".join(r.body + r.path.encode() + repr(r.headers).encode() for r in receiver.requests)
    assert all(secret.encode() in wire for secret in (SLACK_TOKEN, PD_KEY, HOOK_TOKEN, AM_TOKEN))
    assert {r.headers.get("authorization") for r in receiver.requests if r.path == "/api/v2/alerts"} == {
        f"Bearer {AM_TOKEN}"
    }
    # ...but never into a log record or an outcome the executor audits.
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "sink slack" in logged and "HTTP 500" in logged and "connection_refused" in logged
    audited = repr(outcomes)
    for secret in SECRETS:
        assert secret not in logged
        assert secret not in audited
    assert receiver.url not in logged


def test_a_missing_secret_fails_that_sink_naming_the_setting(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    registry: prometheus_client.CollectorRegistry,
    tmp_path: pathlib.Path,
) -> None:
    _, sinks = samples.build(
        [
            {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL"},
            {"name": "pd", "type": "pagerduty", "routing_key_file": str(tmp_path / "absent")},
        ],
        runtime,
        registry,
    )
    n = samples.notification_of(samples.action_request())
    slack_result, pd_result = sinks["slack"].send(n), sinks["pd"].send(n)
    assert slack_result.status is pd_result.status is base.SinkStatus.FAILED
    assert slack_result.reason == (
        "secret: alerting.sinks[slack].webhook_url_env: environment variable SLACK_URL is unset or empty; "
        "set it (e.g. from a Kubernetes Secret) or use alerting.sinks[slack].webhook_url_file"
    )
    assert f"alerting.sinks[pd].routing_key_file: cannot read {tmp_path / 'absent'}" in pd_result.reason
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_failed_total", {"sink": "pd", "reason": "secret"}
        )
        == 1
    )
    assert receiver.requests == []


def test_a_rotated_secret_file_is_used_on_the_next_send(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    registry: prometheus_client.CollectorRegistry,
    tmp_path: pathlib.Path,
) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(f"{receiver.url}/services/old\n")
    _, sinks = samples.build(
        [{"name": "slack", "type": "slack", "webhook_url_file": str(url_file)}], runtime, registry
    )
    n = samples.notification_of(samples.action_request())
    sinks["slack"].send(n)
    url_file.write_text(f"{receiver.url}/services/new\n")
    sinks["slack"].send(n)
    assert [r.path for r in receiver.requests] == ["/services/old", "/services/new"]

"""Slack incoming webhook: exact wire format and Slack's documented Block Kit limits."""

from __future__ import annotations

from typing import Any

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, config, notification, slack
from tests.support.alerts import receiver as receiver_mod
from tests.support.alerts import samples

WEBHOOK_PATH = "/services/T0001/B0002/XXXXsecretXXXX"


def _slack_sink(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> base.AlertSink:
    env["SLACK_URL"] = receiver.url + WEBHOOK_PATH
    _, sinks = samples.build(
        [{"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL"}], runtime, registry
    )
    return sinks["slack"]


def _notification(drifted: int = 2, **overrides: Any) -> notification.Notification:
    params = samples.standard_params()
    if drifted != 2:
        params["drifted"] = [
            samples.drift_result(f"feature_{i:03d}_" + "x" * 40, 0.2 + i / 100).to_json()
            for i in range(drifted)
        ]
    params.update(overrides)
    return notification.from_request(
        samples.action_request(**params), override_hint_template=config.DEFAULT_OVERRIDE_HINT
    )


def test_posts_text_and_blocks_to_the_webhook_url(
    receiver: receiver_mod.Receiver,
    runtime: base.Runtime,
    env: dict[str, str],
    registry: prometheus_client.CollectorRegistry,
) -> None:
    sink = _slack_sink(receiver, runtime, env, registry)
    result = sink.send(_notification())

    assert result.status is base.SinkStatus.SENT
    assert (result.attempts, result.http_status) == (1, 200)
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", WEBHOOK_PATH)
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    body = request.json()
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":large_orange_circle: [severe] fraud-model: data drift on 2 features")
    header, fields, summary, drift, action, override, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "[severe] fraud-model: data drift on 2 features",
            "emoji": True,
        },
    }
    field_texts = [f["text"] for f in fields["fields"]]
    assert field_texts[:4] == [
        "*Model*\nfraud-model",
        "*Version*\n7",
        "*Severity*\n:large_orange_circle: severe",
        "*Event*\ntrigger",
    ]
    assert field_texts[4] == "*Since*\n<!date^1699999000^{date_short_pretty} {time}|2023-11-14 21:56:40 UTC>"
    assert field_texts[5] == "*Incident*\n`fraud-model/data_drift/amount`"
    assert summary["text"]["text"] == "data drift on 2 features"
    lines = drift["text"]["text"].split("\n")
    # amount is 4.2x its threshold, country's p-value 10x below its threshold: country first.
    assert lines == [
        "*What drifted (2 signals, worst first)*",
        "• `country` chi2: 0.001 < 0.01, p=0.001, effect=0.3",
        "• `amount` psi: 0.42 > 0.1, effect=0.21",
    ]
    assert action["text"]["text"] == "*Agent action:* rollback to version 6 planned"
    assert override["text"]["text"].startswith("*Override:* To mute:")
    assert context["type"] == "context"
    assert [e["text"] for e in context["elements"]] == [
        "drift-agent · incident `fraud-model/data_drift/amount`",
        "<https://grafana.example/d/drift|Dashboard>",
        "<https://runbooks.example/drift|Runbook>",
    ]
    assert (
        registry.get_sample_value(
            "drift_agent_notifications_sent_total", {"sink": "slack", "event": "trigger"}
        )
        == 1.0
    )


def test_sixty_drifted_features_stay_within_slack_limits() -> None:
    body = slack.render(_notification(drifted=60))
    _assert_within_limits(body)
    drift_text = "\n".join(
        text for kind, text in receiver_mod.iter_texts(body["blocks"]) if kind == "section"
    )
    # All 60 fit in a few packed sections: none is left out.
    assert sum(1 for line in drift_text.split("\n") if line.startswith("• ")) == 60


def test_a_huge_incident_is_truncated_with_a_marker_worst_first() -> None:
    long_name = "f" * 2500
    n = notification.from_request(
        samples.action_request(
            title="T" * 400,
            summary="S" * 5000,
            drifted=[samples.drift_result(f"{long_name}{i}", 0.2 + i / 1000).to_json() for i in range(500)],
        )
    )
    body = slack.render(n)
    _assert_within_limits(body)
    texts = [text for _, text in receiver_mod.iter_texts(body["blocks"])]
    assert body["blocks"][0]["text"]["text"].endswith(slack.TRUNCATION_MARKER)
    assert any(t.startswith("…and ") and "more drifted signals not shown" in t for t in texts)
    assert body["text"].endswith(slack.TRUNCATION_MARKER)
    # The worst signal (highest score, i=499) survives truncation.
    assert any(f"{long_name[:50]}" in t and "0.699" in t for t in texts)


def test_text_is_set_for_every_event_and_escapes_markup() -> None:
    for event in ("trigger", "update", "resolve", "change"):
        kind = actions_base.ActionKind.RESOLVE if event == "resolve" else actions_base.ActionKind.ALERT
        n = notification.from_request(
            samples.action_request(kind, event=event, summary="a<b & c>d", title=f"{event} title")
        )
        body = slack.render(n)
        assert body["text"]
        assert body["blocks"][2]["text"]["text"] == "a&lt;b &amp; c&gt;d"
    resolved = slack.render(
        notification.from_request(samples.action_request(actions_base.ActionKind.RESOLVE))
    )
    assert resolved["blocks"][0]["text"]["text"].startswith("Resolved: ")


def test_a_summary_the_title_already_says_is_not_said_twice() -> None:
    # A canary verdict: no title given, so the title is "[severity] model: reason" and the summary the reason.
    verdict = "canary 5 (stable 3) promoted: all 3 steps passed"
    request = actions_base.ActionRequest(
        kind=actions_base.ActionKind.ALERT,
        model_name="fraud",
        idempotency_key="k",
        incident_id="fraud/canary/5",
        severity="minor",
        reason=verdict,
        params={"event": "change", "summary": verdict},
    )
    text = slack.render(notification.from_request(request))["text"]
    assert text.count(verdict) == 1
    assert text.endswith(f"[minor] fraud: {verdict}")


def _assert_within_limits(body: dict[str, Any]) -> None:
    assert body["text"] and len(body["text"]) <= slack.TEXT_CHARS
    blocks = body["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", ())) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", ()))
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    total = sum(len(text) for _, text in receiver_mod.iter_texts(blocks))
    assert total <= 12_000

"""The alerting settings group: the example file, and errors that name the field and the fix."""

from __future__ import annotations

import pathlib
from typing import Any

import prometheus_client
import pydantic
import pytest

from actions.alerts import base, config, sink_factory
from agent import settings

EXAMPLE = pathlib.Path(__file__).resolve().parents[4] / "config" / "alerting.yaml"


def test_the_example_file_loads_and_builds_every_sink() -> None:
    loaded = settings.load_settings(EXAMPLE)
    alerting = loaded.alerting
    assert [s.type for s in alerting.sinks] == [
        "slack",
        "pagerduty",
        "alertmanager",
        "webhook",
        "slack",
        "null",
    ]
    assert alerting.data_owner_sinks == ["slack-data-owners", "log"]
    sinks = sink_factory.build_sinks(alerting, registry=prometheus_client.CollectorRegistry())
    assert set(sinks) == {s.name for s in alerting.sinks}
    assert all(isinstance(sink, base.AlertSink) for sink in sinks.values())
    assert sinks["pagerduty-ml"].min_severity.value == "severe"


def test_the_default_is_a_log_only_sink() -> None:
    alerting = settings.AgentSettings().alerting
    sinks = sink_factory.build_sinks(alerting, registry=prometheus_client.CollectorRegistry())
    assert isinstance(sinks["log"], base.NullSink)
    assert alerting.alert_sinks == alerting.page_sinks == ["log"]


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        config.AlertingConfig.model_validate(data)
    return settings.format_validation_error(caught.value, "test")


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"name": "x", "type": "teams"}, "'null', 'slack', 'pagerduty', 'alertmanager', 'webhook'"),
        (
            {"name": "x", "type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/C"},
            "webhook_url: secrets are never set inline; use webhook_url_file",
        ),
        ({"name": "x", "type": "pagerduty", "routing_key": "abc"}, "use routing_key_file"),
        (
            {"name": "x", "type": "slack"},
            "webhook_url: give webhook_url_env (variable name) or webhook_url_file",
        ),
        (
            {"name": "x", "type": "slack", "webhook_url_env": "A", "webhook_url_file": "/f"},
            "webhook_url_env and webhook_url_file are both set; keep one",
        ),
        ({"name": "x", "type": "webhook", "secret_env": "S"}, "give exactly one of url, url_env, url_file"),
        ({"name": "Bad Name", "type": "null"}, "sinks.0.null.name"),
        ({"name": "x", "type": "null", "min_severity": "high"}, "sinks.0.null.min_severity"),
        (
            {"name": "x", "type": "null", "rate_limit": {"per_minute": 0}},
            "sinks.0.null.rate_limit.per_minute",
        ),
        ({"name": "x", "type": "null", "colour": "red"}, "sinks.0.null.colour"),
    ],
)
def test_bad_sink_entries_are_rejected_with_the_fix(sink: dict[str, Any], expected: str) -> None:
    message = _error({"sinks": [sink], "alert_sinks": [], "page_sinks": []})
    assert expected in message, message


def test_inline_secret_values_never_appear_in_the_error() -> None:
    message = _error(
        {
            "sinks": [
                {"name": "x", "type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/SECRET"}
            ]
        }
    )
    assert "SECRET" not in message


def test_routes_must_name_configured_sinks_and_names_are_unique() -> None:
    message = _error({"sinks": [{"name": "log", "type": "null"}], "page_sinks": ["pagerduty"]})
    assert "page_sinks: unknown sink names ['pagerduty']; configured sinks are ['log']" in message
    message = _error(
        {"sinks": [{"name": "a", "type": "null"}, {"name": "a", "type": "null"}], "alert_sinks": []}
    )
    assert "names must be unique, repeated: ['a']" in message


def test_an_unknown_builder_name_lists_the_valid_ones() -> None:
    with pytest.raises(sink_factory.UnknownSinkError) as caught:
        sink_factory.builder_for("teams")
    assert (
        str(caught.value)
        == "unknown sink type 'teams'; valid types are alertmanager, null, pagerduty, slack, webhook"
    )

"""The agent's own alert rules: every alert has a promtool unit test, a severity, and exported metrics.

promtool itself checks the same files in tests/integration/alerting/test_promtool_rules.py.
"""

from __future__ import annotations

import re

import prometheus_client
import yaml

from actions.alerts import metrics
from agent import settings
from agent.observability import collectors, detector_failures
from agent.observability import metrics as agent_metrics
from agent.runtime import audit_topic
from tests.support.alerts.rules import EXPECTED_ALERTS, RULES, RULES_TEST


def test_every_alert_is_covered_by_a_unit_test_and_has_a_severity() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    assert all(rule["labels"]["severity"] in {"critical", "warning", "info"} for rule in rules)
    assert all({"summary", "description"} <= set(rule["annotations"]) for rule in rules)
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", ())
        if case.get("exp_alerts")
    }
    assert fired == EXPECTED_ALERTS


def _exported_names(registry: prometheus_client.CollectorRegistry) -> set[str]:
    # State gauges are registered by their owners at run time, from the one list in collectors.
    names: set[str] = {collectors.PREFIX + spec.name for spec in collectors.STATE_GAUGES}
    for family in registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
            family.type, ("",)
        )
        names.update({family.name, *(family.name + suffix for suffix in suffixes)})
    return names


def test_rules_name_only_metrics_the_agent_exports() -> None:
    registry = prometheus_client.CollectorRegistry()
    agent_metrics.AgentMetrics(registry)
    metrics.SinkMetrics(registry)
    detector_failures.FailureReporter(registry, None)
    audit_topic.AuditProducer(settings.KafkaSettings(), "audit", registry=registry)  # connects on first send
    used = set(re.findall(r"\bdrift_agent_[a-z_]+", RULES.read_text()))
    expressions = " ".join(
        rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    )
    in_expressions = set(re.findall(r"\bdrift_agent_[a-z_]+", expressions))
    assert in_expressions >= {
        "drift_agent_consumer_lag",
        "drift_agent_dlq_total",
        "drift_agent_ready",
        "drift_agent_notifications_failed_total",
    }
    assert used - _exported_names(registry) == set()

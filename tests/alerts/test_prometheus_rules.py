"""The agent's own alert rules: valid for promtool, and each alert fires on sample series."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import prometheus_client
import pytest
import yaml

from actions.alerts import metrics
from agent.observability import collectors
from agent.observability import metrics as agent_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus-rules.yaml"
RULES_TEST = ROOT / "tests" / "alerts" / "rules_test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed; apt-get install -y prometheus (scripts/setup.sh --test)",
)
EXPECTED_ALERTS = {
    "DriftAgentDown",
    "DriftAgentAbsent",
    "DriftAgentNotReady",
    "DriftAgentConsumerLagHigh",
    "DriftAgentDeadLetterGrowth",
    "DriftAgentDeadLettersLost",
    "DriftAgentNotificationsFailing",
    "DriftAgentNotificationsRateLimited",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


@needs_promtool
def test_promtool_accepts_the_rules_file() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


@needs_promtool
def test_every_alert_fires_in_the_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


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

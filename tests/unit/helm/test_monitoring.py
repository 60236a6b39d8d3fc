"""PrometheusRule and Grafana dashboard: one source of rules, and only metrics the agent exports."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import prometheus_client
import pytest
import yaml

from actions.alerts import metrics as sink_metrics
from agent.observability import collectors
from agent.observability import detector_results as detector_metrics
from agent.observability import metrics as agent_metrics
from agent.respond import executor
from detectors import latency
from detectors import window as window_mod
from tests.support.helm import chart, samples
from tests.support.helm.monitoring import rendered_prometheus_rule, shipped_rules

METRIC_NAME = re.compile(r"\bdrift_agent_[a-z0-9_]+")
# What the dashboard must show (the list), by panel title.
REQUIRED_PANELS = (
    "Drift score per feature",
    "Dataset drift share",
    "Severity",
    "Consumer lag",
    "Dead-letter rate",
    "Model latency quantiles",
    "Notifications",
)


def test_chart_copy_of_the_rules_equals_config() -> None:
    copy = yaml.safe_load((chart.CHART_PATH / "files" / "prometheus-rules.yaml").read_text(encoding="utf-8"))
    assert copy["groups"] == shipped_rules()["groups"], (
        "helm/drift-agent/files/prometheus-rules.yaml drifted from config/prometheus-rules.yaml: copy it over"
    )


def test_prometheus_rule_carries_the_shipped_groups_untemplated() -> None:
    rule = rendered_prometheus_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["role"] == "alert-rules"
    assert rule["spec"]["groups"] == shipped_rules()["groups"]
    # Helm must not have eaten the rules' own Go templates.
    summaries = [r["annotations"]["summary"] for r in rule["spec"]["groups"][0]["rules"]]
    assert any("{{ $labels.instance }}" in summary for summary in summaries)


def test_prometheus_rule_is_off_by_default() -> None:
    assert chart.find(chart.render(samples.MINIMAL), "PrometheusRule") == []


def dashboard_config_map() -> chart.Doc:
    return chart.only(chart.render(samples.MINIMAL), "ConfigMap", f"{chart.FULLNAME}-dashboard")


def dashboard() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(dashboard_config_map()["data"]["drift-agent.json"])
    return parsed


def exported_metric_names() -> set[str]:
    """Every series name the agent's metric objects expose, built on one fresh registry."""
    registry = prometheus_client.CollectorRegistry()
    agent_metrics.AgentMetrics(registry)
    detector_metrics.DetectorMetrics(registry)
    executor.Metrics(registry)
    sink_metrics.SinkMetrics(registry)
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
    }
    # Gauges that mirror state are registered by their owners (source, sidecar, executor, ...)
    # from the one list in collectors; their names come from that list.
    names: set[str] = {collectors.PREFIX + spec.name for spec in collectors.STATE_GAUGES}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar() -> None:
    config_map = dashboard_config_map()
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard()["uid"] == "drift-agent"


def test_dashboard_has_the_required_panels_each_with_queries() -> None:
    panels = {panel["title"]: panel for panel in dashboard()["panels"]}
    for title in REQUIRED_PANELS:
        assert title in panels, f"dashboard lacks a '{title}' panel"
        assert all(target["expr"] for target in panels[title]["targets"])
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_only_metrics_the_agent_exports() -> None:
    exported = exported_metric_names()
    queried = {
        name
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    variables = {
        name
        for var in dashboard()["templating"]["list"]
        if isinstance(var.get("query"), dict)
        for name in METRIC_NAME.findall(var["query"]["query"])
    }
    assert queried, "no drift_agent_ metric in the dashboard"
    assert sorted((queried | variables) - exported) == []


MATCHER = re.compile(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"')


def selects(expr: str, labels: dict[str, str]) -> bool:
    """Whether the label matchers in ``expr`` accept ``labels`` (dashboard variables match anything)."""
    for name, op, pattern in MATCHER.findall(expr):
        regex = ".*" if pattern.startswith("$") else pattern
        value = labels.get(name, "")
        if op == "=" and value != pattern:
            return False
        if op == "!=" and value == pattern:
            return False
        if op == "=~" and not re.fullmatch(regex, value):
            return False
    return True


def test_latency_panel_selects_the_series_the_latency_detector_produces() -> None:
    rng = np.random.default_rng(7)
    gpu = rng.lognormal(np.log(8.0), 0.3, 500)
    window = window_mod.Window(features={}, gpu_latency_ms=gpu, latency_ms=gpu + 5.0)
    result = latency.LatencyDetector(latency.LatencyConfig(gpu_p95_slo_ms=50.0)).update(window)
    registry = prometheus_client.CollectorRegistry()
    detector_metrics.DetectorMetrics(registry).observe((result,))

    panel = next(p for p in dashboard()["panels"] if p["title"] == "Model latency quantiles")
    expr = panel["targets"][0]["expr"]
    selected = {
        (sample.labels["feature"], sample.labels["name"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == METRIC_NAME.findall(expr)[0] and selects(expr, sample.labels)
    }
    assert set(selected) == {
        (column, q) for column in ("gpu_latency_ms", "latency_ms") for q in ("p50", "p95", "p99")
    }
    assert selected[("gpu_latency_ms", "p95")] == pytest.approx(float(np.quantile(gpu, 0.95)))

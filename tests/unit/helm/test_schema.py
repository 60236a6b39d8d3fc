"""values.schema.json refuses bad values at install time, naming the key and what is allowed."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from agent import settings as settings_mod
from tests.support.helm import chart


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"mode": "sidecr"}, "at '/mode': value must be one of 'sidecar', 'standalone'"),
        ({"image": {"repository": ""}}, "at '/image/repository': minLength: got 0, want 1"),
        ({"image": None}, "missing property 'image'"),
        (
            {"target": {"kind": "gke"}},
            "at '/target/kind': value must be one of 'kubernetes', 'kserve', 'local'",
        ),
        ({"retrain": {"runner": "argo"}}, "at '/retrain/runner': value must be one of 'none', 'kubernetes'"),
        ({"agent": {"http": {"port": 70000}}}, "at '/agent/http/port': maximum: got 70,000, want 65,535"),
        ({"agent": {"http": {"port": "9108"}}}, "at '/agent/http/port': got string, want integer"),
        ({"agent": {"kafak": {}}}, "at '/agent': additional properties 'kafak' not allowed"),
        ({"agent": {"runtime": {"drain_timeout_s": 0}}}, "at '/agent/runtime/drain_timeout_s'"),
        ({"metrics": {"service": {"port": 0}}}, "at '/metrics/service/port': minimum: got 0, want 1"),
        ({"serving": {"ports": [{"containerPort": 80800}]}}, "at '/serving/ports/0/containerPort': maximum"),
        (
            {"resources": {"request": {"cpu": "1"}}},
            "at '/resources': additional properties 'request' not allowed",
        ),
        ({"resources": {"requests": {"cpu": "lots"}}}, "at '/resources/requests/cpu'"),
        (
            {"serving": {"resources": {"limits": []}}},
            "at '/serving/resources/limits': got array, want object",
        ),
        ({"serving": {"gpu": {"count": -1}}}, "at '/serving/gpu/count': minimum: got -1, want 0"),
        ({"probes": {"liveness": {"path": "healthz"}}}, "at '/probes/liveness/path'"),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        (
            {"secrets": {"sinks": [{"sink": "slack"}]}},
            "at '/secrets/sinks/0': missing properties 'secretName', 'key'",
        ),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "at '/podDisruptionBudget/maxUnavailable'"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_the_rule(values: dict[str, Any], expected: str) -> None:
    message = chart.render_error(values)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


def test_the_shipped_values_pass_the_schema() -> None:
    with helm_python.Chart.load(chart.CHART_PATH) as loaded:
        loaded.validate_schema(loaded.values)
        assert loaded.schema is not None
        assert loaded.schema["properties"]["mode"]["enum"] == ["sidecar", "standalone"]


def test_the_agent_group_names_in_the_schema_are_the_settings_groups() -> None:
    with helm_python.Chart.load(chart.CHART_PATH) as loaded:
        assert loaded.schema is not None
        groups = set(loaded.schema["properties"]["agent"]["properties"])
    expected = set(settings_mod.AgentSettings.model_fields)
    assert groups == expected, (
        "keep helm/drift-agent/values.schema.json properties.agent.properties in step with AgentSettings: "
        f"missing {sorted(expected - groups)}, extra {sorted(groups - expected)}"
    )

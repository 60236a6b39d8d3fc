"""Read the chart's RBAC objects by rendering the chart itself (helm_python, no helm binary)."""

from __future__ import annotations

import pathlib
from typing import Any

import helm_python
import yaml

CHART_PATH = pathlib.Path(__file__).resolve().parents[2] / "helm" / "drift-agent"
RBAC_TEMPLATE = "drift-agent/templates/rbac.yaml"


def render_rbac(
    values: dict[str, Any] | None = None, *, namespace: str = "default", release: str = "drift-agent"
) -> list[dict[str, Any]]:
    """The objects rbac.yaml renders to, for these values."""
    chart = helm_python.Chart.load(CHART_PATH)
    rendered = chart.render(values=values or {}, name=release, namespace=namespace, is_install=True)
    return [doc for doc in yaml.safe_load_all(rendered[RBAC_TEMPLATE]) if doc]


def load_role_rules(
    values: dict[str, Any] | None = None, *, namespace: str = "default"
) -> list[dict[str, Any]]:
    """The rules of the chart's one Role (fails if the chart renders anything but one Role)."""
    roles = [doc for doc in render_rbac(values, namespace=namespace) if doc["kind"] == "Role"]
    if len(roles) != 1:
        raise AssertionError(f"expected exactly one Role in {RBAC_TEMPLATE}, found {len(roles)}")
    rules: list[dict[str, Any]] = roles[0]["rules"]
    return rules

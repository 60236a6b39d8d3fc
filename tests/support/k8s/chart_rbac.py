"""Read the chart's RBAC objects by rendering the chart itself (helm_python, no helm binary)."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import helm_python
import yaml
from kubernetes import client as k8s_client

from tests.infra import kube
from tests.support.k8s import helpers

CHART_PATH = pathlib.Path(__file__).resolve().parents[3] / "helm" / "drift-agent"
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


def grant_chart_role(
    admin: k8s_client.ApiClient, agent: k8s_client.ApiClient, namespace: str, values: dict[str, Any]
) -> None:
    """Create the Role the chart renders for ``values`` and bind it to the agent token's user."""
    rules = load_role_rules(values, namespace=namespace)
    rbac = k8s_client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace, helpers.build(k8s_client.V1Role, {"metadata": {"name": "drift-agent"}, "rules": rules})
    )
    binding = {
        "metadata": {"name": "drift-agent"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "drift-agent"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": kube.AGENT_USER}],
    }
    rbac.create_namespaced_role_binding(namespace, helpers.build(k8s_client.V1RoleBinding, binding))
    wait_until_authorizer_allows(agent, namespace, rules[0])


def wait_until_authorizer_allows(agent: k8s_client.ApiClient, namespace: str, rule: dict[str, Any]) -> None:
    """The RBAC authorizer sees new bindings through a watch: wait until it has this one."""
    names = rule.get("resourceNames") or [""]
    attributes = {
        "namespace": namespace,
        "group": rule["apiGroups"][0],
        "resource": rule["resources"][0],
        "verb": rule["verbs"][0],
        "name": names[0],
    }
    review = helpers.build(k8s_client.V1SelfSubjectAccessReview, {"spec": {"resourceAttributes": attributes}})
    authorization = k8s_client.AuthorizationV1Api(agent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if authorization.create_self_subject_access_review(review).to_dict()["status"]["allowed"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the API server never authorized {attributes} for the agent after the grant")

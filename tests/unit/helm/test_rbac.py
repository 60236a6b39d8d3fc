"""The chart's RBAC objects, rendered offline: nothing cluster-wide.

That the Role is enough for the agent, and no more, is checked against the real RBAC authorizer
in tests/integration/kubernetes/test_rbac.py.
"""

from __future__ import annotations

from tests.support.k8s import chart_rbac


def test_the_chart_creates_nothing_cluster_wide() -> None:
    docs = chart_rbac.render_rbac(
        {"target": {"kubernetes": {"canaryDeployment": "model-canary"}}, "retrain": {"runner": "kubernetes"}},
        namespace="ml",
    )
    assert sorted(doc["kind"] for doc in docs) == ["Role", "RoleBinding", "ServiceAccount"]
    assert {doc["metadata"]["namespace"] for doc in docs} == {"ml"}
    binding = next(doc for doc in docs if doc["kind"] == "RoleBinding")
    account = next(doc for doc in docs if doc["kind"] == "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "ml"}
    ]

"""KubernetesDeploymentTarget without a server: how a canary splits the replicas.

The target against the real API server: tests/integration/kubernetes/test_deployment_target.py.
"""

from __future__ import annotations

from actions.targets import kubernetes as k8s_target


def test_replicas_for_keeps_both_sides_serving() -> None:
    assert k8s_target.replicas_for(4, 25) == (3, 1)
    assert k8s_target.replicas_for(10, 5) == (9, 1)
    assert k8s_target.replicas_for(1, 10) == (1, 1)
    assert k8s_target.replicas_for(4, 99) == (1, 4)
    assert k8s_target.replicas_for(4, 100) == (0, 4)

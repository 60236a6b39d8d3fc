"""A LeaderElector on the usual lease timings and a manual clock, for the leader tests.

Shared by tests/unit/agent/runtime/test_leader.py (no server) and
tests/integration/kubernetes/test_leader.py (a real Lease).
"""

from __future__ import annotations

from kubernetes import client as k8s_client

from agent.runtime import leader
from tests.support.k8s import helpers


def elector(
    api: k8s_client.ApiClient, namespace: str, identity: str, clock: helpers.ManualClock
) -> leader.LeaderElector:
    return leader.LeaderElector(
        api,
        namespace,
        "drift-agent",
        identity,
        lease_duration_s=15,
        renew_deadline_s=10,
        retry_period_s=2,
        clock=clock,
        wall_clock=clock,
    )

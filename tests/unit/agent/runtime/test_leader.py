"""Leader election without an API server: an unreachable one, its settings, and local mode.

On a real coordination.k8s.io/v1 Lease: tests/integration/kubernetes/test_leader.py.
"""

from __future__ import annotations

import pytest
from kubernetes import client as k8s_client

from agent.runtime import leader
from agent.settings import groups as settings_groups
from tests.infra import kube
from tests.support.k8s import helpers
from tests.support.k8s.leader import elector


def test_an_unreachable_api_server_means_not_leader_not_a_crash(clock: helpers.ManualClock) -> None:
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{kube.free_port()}"  # nothing listens there
    configuration.retries = 0
    candidate = elector(k8s_client.ApiClient(configuration), "default", "pod-a", clock)
    assert candidate.try_acquire_or_renew() is False
    assert candidate.is_leader() is False


def test_settings_reject_a_renew_deadline_longer_than_the_lease() -> None:
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        settings_groups.LeaderElectionSettings(lease_duration_s=10, renew_deadline_s=12)


def test_always_leader_for_local_mode() -> None:
    always = leader.AlwaysLeader()
    assert always.try_acquire_or_renew() and always.is_leader()

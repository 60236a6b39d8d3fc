"""Leader election on a real coordination.k8s.io/v1 Lease, driven step by step with a manual clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client as k8s_client

from agent.runtime import leader
from tests.infra import kube
from tests.support.k8s import helpers
from tests.support.k8s.leader import elector

pytestmark = pytest.mark.e2e


def read_lease(api: k8s_client.ApiClient, namespace: str) -> Any:
    return k8s_client.CoordinationV1Api(api).read_namespaced_lease("drift-agent", namespace)


def test_one_candidate_leads_and_the_other_takes_over_after_the_lease_duration(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    first = elector(admin_api, namespace, "pod-a", clock)
    second = elector(admin_api, namespace, "pod-b", clock)

    assert first.try_acquire_or_renew() is True
    assert second.try_acquire_or_renew() is False
    assert first.is_leader() and not second.is_leader()
    lease = read_lease(admin_api, namespace)
    assert lease.spec.holder_identity == "pod-a"
    assert lease.spec.lease_duration_seconds == 15
    assert lease.spec.lease_transitions == 0

    # The holder renews on time: the other keeps waiting, however long that goes on.
    for _ in range(10):
        clock.advance(2)
        assert first.try_acquire_or_renew() is True
        assert second.try_acquire_or_renew() is False

    # The holder stops renewing (hung, partitioned): it stops acting at the renew deadline ...
    clock.advance(9)
    assert first.is_leader() is True
    clock.advance(1)
    assert first.is_leader() is False
    # ... and the other takes over only once the lease duration has passed on its own clock.
    assert second.try_acquire_or_renew() is False
    clock.advance(4.9)
    assert second.try_acquire_or_renew() is False
    clock.advance(0.2)
    assert second.try_acquire_or_renew() is True
    assert second.is_leader()

    lease = read_lease(admin_api, namespace)
    assert lease.spec.holder_identity == "pod-b"
    assert lease.spec.lease_transitions == 1
    # The old holder comes back: it sees a fresh holder and does not grab the lease.
    assert first.try_acquire_or_renew() is False
    assert not first.is_leader()


def test_release_hands_over_without_waiting(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    first = elector(admin_api, namespace, "pod-a", clock)
    second = elector(admin_api, namespace, "pod-b", clock)
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()

    first.release()

    assert not first.is_leader()
    assert read_lease(admin_api, namespace).spec.holder_identity is None
    assert second.try_acquire_or_renew() is True


def test_a_stale_write_loses_to_the_api_servers_optimistic_concurrency(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    first = elector(admin_api, namespace, "pod-a", clock)
    assert first.try_acquire_or_renew()
    stale = read_lease(admin_api, namespace)
    clock.advance(2)
    assert first.try_acquire_or_renew()  # a renew moves the resourceVersion on

    body = {
        "metadata": {"resourceVersion": stale.metadata.resource_version},
        "spec": {"holderIdentity": "pod-z"},
    }
    with pytest.raises(k8s_client.ApiException) as raised:
        k8s_client.CoordinationV1Api(admin_api).patch_namespaced_lease(
            "drift-agent", namespace, body, _content_type=helpers.MERGE_PATCH
        )
    assert raised.value.status == 409
    assert read_lease(admin_api, namespace).spec.holder_identity == "pod-a"


def test_the_ticker_thread_acquires_and_stop_releases(
    kube_apiserver: kube.KubeAPIServer, admin_api: k8s_client.ApiClient, namespace: str
) -> None:
    acquired = threading.Event()
    candidate = leader.LeaderElector(
        kube_apiserver.admin_client(),
        namespace,
        "drift-agent",
        "pod-a",
        lease_duration_s=3,
        renew_deadline_s=2,
        retry_period_s=0.2,
    )
    candidate.on_change = lambda leading: acquired.set() if leading else None
    candidate.run()
    try:
        assert acquired.wait(timeout=20), "the ticker never acquired a free lease"
        assert candidate.is_leader()
    finally:
        candidate.stop()
    assert not candidate.is_leader()
    assert read_lease(admin_api, namespace).spec.holder_identity is None

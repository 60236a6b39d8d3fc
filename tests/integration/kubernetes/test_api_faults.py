"""The agent against a real API server whose answers come late or never (a TCP proxy).

Every call gives up after its request timeout instead of hanging. Leader election: two
candidates with real clocks and ticker threads, one reaching the API server through the proxy,
the other directly; a sampler asks both ``is_leader()`` every few milliseconds the whole time,
and never may both say yes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kubernetes import client as k8s_client

from actions import targets
from actions.targets import base as target_base
from actions.targets import kubernetes as k8s_target
from agent.runtime import heartbeat, leader
from tests.infra import kafka as waits
from tests.infra import kube
from tests.support.k8s import helpers, proxy

pytestmark = pytest.mark.e2e


def client_via(kube_apiserver: kube.KubeAPIServer, url: str) -> k8s_client.ApiClient:
    api = kube_apiserver.admin_client()
    api.configuration.host = url
    return api


def candidate(
    api: k8s_client.ApiClient, namespace: str, identity: str, beats: heartbeat.Heartbeats | None = None
) -> leader.LeaderElector:
    # Short timings so the test takes seconds: requests time out after 1 s (half the deadline).
    return leader.LeaderElector(
        api,
        namespace,
        "drift-agent",
        identity,
        lease_duration_s=3,
        renew_deadline_s=2,
        retry_period_s=0.25,
        heartbeats=beats,
        stall_after_s=10,
    )


def answer_of(question: Callable[[], object]) -> object:
    """``question()``, asked from another thread: an elector holding its lock across a hung
    request would never answer, and the test must fail rather than hang with it."""
    answers: list[object] = []
    asker = threading.Thread(target=lambda: answers.append(question()), daemon=True)
    asker.start()
    asker.join(30)
    assert answers, "is_leader() did not answer while the API server hung"
    return answers[0]


class Sampler:
    """Asks both candidates, over and over, whether they lead."""

    def __init__(self, first: leader.LeaderElector, second: leader.LeaderElector) -> None:
        self.samples: list[tuple[bool, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(first, second), daemon=True)
        self._thread.start()

    def _run(self, first: leader.LeaderElector, second: leader.LeaderElector) -> None:
        while not self._stop.wait(0.005):
            self.samples.append((first.is_leader(), second.is_leader()))

    def stop(self) -> list[tuple[bool, bool]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def test_late_or_lost_answers_never_make_two_leaders_and_the_cut_off_one_keeps_ticking(
    kube_apiserver: kube.KubeAPIServer, admin_api: k8s_client.ApiClient, namespace: str
) -> None:
    beats = heartbeat.Heartbeats()
    with proxy.FlakyProxy("127.0.0.1", kube_apiserver.port) as flaky:
        behind_proxy = candidate(client_via(kube_apiserver, flaky.url), namespace, "pod-a", beats)
        direct = candidate(admin_api, namespace, "pod-b")
        behind_proxy.run()
        waits.wait_until(behind_proxy.is_leader, timeout_s=20, what="pod-a to lead")
        direct.run()
        sampler = Sampler(behind_proxy, direct)
        try:
            # Answers 0.8 s late: each renew (read + patch) takes ~1.6 s of its 2 s deadline. The
            # renews still land, so the other candidate never takes over; pod-a's leadership
            # counts from each request's start and lapses between renews instead of outliving it.
            flaky.mode, flaky.delay_s = "delay", 0.8
            waits.wait_until(
                lambda: sum(1 for a, _ in sampler.samples if not a) > 50, timeout_s=20, what="pod-a to lapse"
            )
            assert not direct.is_leader()

            # No answers at all: pod-a's requests time out, its ticker keeps turning (alive), it
            # stops leading at its deadline, and pod-b takes over after the lease duration.
            flaky.mode = "hang"
            waits.wait_until(direct.is_leader, timeout_s=30, what="pod-b to take over")
            assert flaky.held > 0  # the API server's answers really were swallowed
            assert answer_of(behind_proxy.is_leader) is False
            assert beats.alive(), beats.reason()

            # Answers flow again: pod-a sees pod-b renewing and stays a follower.
            flaky.mode = "pass"
            waits.wait_until(lambda: len(sampler.samples) > 0 and direct.is_leader(), what="pod-b leading")
        finally:
            samples = sampler.stop()
            direct.stop(release=False)
            behind_proxy.stop(release=False)
        assert samples and not any(a and b for a, b in samples), "both candidates led at once"
        assert any(a for a, _ in samples) and any(b for _, b in samples)
        assert not behind_proxy.is_leader()


def test_a_target_call_to_a_hung_api_server_fails_retriably_instead_of_hanging(
    kube_apiserver: kube.KubeAPIServer, admin_api: k8s_client.ApiClient, namespace: str
) -> None:
    helpers.create_deployment(admin_api, namespace, "model-server", version="1", model_uri="s3://m/1")
    with proxy.FlakyProxy("127.0.0.1", kube_apiserver.port) as flaky:
        api = targets.with_request_timeout(client_via(kube_apiserver, flaky.url), (1.0, 1.0))
        target = k8s_target.KubernetesDeploymentTarget(
            api,
            namespace=namespace,
            deployment="model-server",
            container="model",
            clock=helpers.ManualClock(),
        )
        assert target.current_version() == "1"
        flaky.mode = "hang"

        def failure() -> object:
            try:
                return target.current_version()
            except target_base.TargetError as exc:
                return exc

        failed = answer_of(failure)
        assert isinstance(failed, target_base.TargetError) and failed.retriable, failed

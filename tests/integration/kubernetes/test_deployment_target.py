"""KubernetesDeploymentTarget against the real API server (the test plays the controller)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client

from actions.targets import base, dryrun
from actions.targets import kubernetes as k8s_target
from tests.support.k8s import helpers

pytestmark = pytest.mark.e2e

V1_URI = "s3://models/churn/1"
V2_URI = "s3://models/churn/2"


def make_target(
    api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock, **options: Any
) -> k8s_target.KubernetesDeploymentTarget:
    return k8s_target.KubernetesDeploymentTarget(
        api, namespace=namespace, deployment="model", container="model", clock=clock, **options
    )


def test_set_version_rolls_the_pod_template_and_records_the_previous_version(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    before = helpers.read_deployment(admin_api, namespace, "model")
    target = make_target(admin_api, namespace, clock)

    assert target.current_version() == "1"
    target.set_version("2", V2_URI)

    after = helpers.read_deployment(admin_api, namespace, "model")
    assert target.current_version() == "2"
    assert helpers.model_uri_of(after) == V2_URI
    assert after.spec.template.metadata.annotations["drift-agent.io/model-version"] == "2"
    assert after.metadata.annotations["drift-agent.io/previous-version"] == "1"
    assert after.metadata.annotations["drift-agent.io/model-uri"] == V2_URI
    assert after.metadata.generation == before.metadata.generation + 1
    # The controller's deadline is raised to the agent's (GPU cold starts outlast 600 s).
    assert after.spec.progress_deadline_seconds == 1200
    # The sidecar container is left alone.
    assert [c.image for c in after.spec.template.spec.containers if c.name == "drift-agent"] == [
        "drift-agent:0.1.0"
    ]


def test_setting_the_serving_version_again_changes_nothing(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_version("2", V2_URI)
    first = helpers.read_deployment(admin_api, namespace, "model")

    clock.advance(60)
    target.set_version("2", V2_URI)

    second = helpers.read_deployment(admin_api, namespace, "model")
    assert second.metadata.resource_version == first.metadata.resource_version


def test_rollout_status_follows_the_deployment_status(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI, replicas=2)
    target = make_target(admin_api, namespace, clock)
    target.set_version("2", V2_URI)
    generation = helpers.read_deployment(admin_api, namespace, "model").metadata.generation

    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.PROGRESSING
    assert "observe generation" in status.message

    helpers.set_deployment_status(
        admin_api, namespace, "model", observed_generation=generation, replicas=3, updated=1, available=2
    )
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.PROGRESSING
    assert "1 of 2 new replicas" in status.message

    helpers.set_deployment_status(admin_api, namespace, "model", replicas=3, updated=2, available=2)
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.PROGRESSING
    assert "old replicas are pending termination" in status.message

    helpers.set_deployment_status(admin_api, namespace, "model", replicas=2, updated=2, available=1)
    assert "1 of 2 updated replicas are available" in target.rollout_status().message

    helpers.set_deployment_status(admin_api, namespace, "model", replicas=2, updated=2, available=2)
    assert target.rollout_status().phase is base.RolloutPhase.COMPLETE


def test_progress_deadline_exceeded_is_a_failed_rollout(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_version("2", V2_URI)
    helpers.set_deployment_status(
        admin_api,
        namespace,
        "model",
        replicas=3,
        updated=1,
        available=2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "model-7d9" has timed out progressing.',
            }
        ],
    )

    status = target.rollout_status()

    assert status.phase is base.RolloutPhase.FAILED
    assert "exceeded its progress deadline (1200 s)" in status.message
    assert "timed out progressing" in status.message


def test_the_agents_own_deadline_fails_a_rollout_that_never_finishes(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    target = make_target(admin_api, namespace, clock, progress_deadline_s=1200)
    target.set_version("2", V2_URI)
    helpers.set_deployment_status(admin_api, namespace, "model", replicas=3, updated=1, available=2)

    clock.advance(1199)
    assert target.rollout_status().phase is base.RolloutPhase.PROGRESSING
    clock.advance(2)
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.FAILED
    assert "progress_deadline_s=1200" in status.message


def test_image_mode_switches_the_tag(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(
        admin_api, namespace, "model", version=None, image="registry.local:5000/churn:7"
    )
    target = make_target(admin_api, namespace, clock, mode="image")
    assert target.current_version() == "7"

    target.set_version("6", "")

    after = helpers.read_deployment(admin_api, namespace, "model")
    images = {c.name: c.image for c in after.spec.template.spec.containers}
    assert images == {"model": "registry.local:5000/churn:6", "drift-agent": "drift-agent:0.1.0"}
    assert target.current_version() == "6"


def test_a_wrong_container_name_is_a_clear_error(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    target = k8s_target.KubernetesDeploymentTarget(
        admin_api, namespace=namespace, deployment="model", container="predictor", clock=clock
    )
    with pytest.raises(
        base.TargetError, match=r"no container 'predictor' \(it has \['model', 'drift-agent'\]\)"
    ):
        target.set_version("2", V2_URI)


def test_a_missing_deployment_is_a_clear_error(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    target = make_target(admin_api, namespace, clock)
    with pytest.raises(base.TargetError, match=f"deployment {namespace}/model not found"):
        target.current_version()


class InterferingTarget(k8s_target.KubernetesDeploymentTarget):
    """Another writer changes the Deployment between this target's read and its write, once."""

    def __init__(self, admin: k8s_client.ApiClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admin = admin
        self.interfered = False

    def read_deployment(self, name: str) -> Any:
        current = super().read_deployment(name)
        if not self.interfered:
            self.interfered = True
            k8s_client.AppsV1Api(self._admin).patch_namespaced_deployment(
                name,
                current.metadata.namespace,
                {"metadata": {"labels": {"touched-by": "someone-else"}}},
                _content_type=helpers.MERGE_PATCH,
            )
        return current


def test_a_conflicting_write_is_retried_from_a_fresh_read(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    target = InterferingTarget(
        admin_api, admin_api, namespace=namespace, deployment="model", container="model", clock=clock
    )

    target.set_version("2", V2_URI)

    after = helpers.read_deployment(admin_api, namespace, "model")
    assert target.conflicts_seen == 1
    assert after.metadata.labels == {"touched-by": "someone-else"}  # the other writer's change survives
    assert helpers.model_uri_of(after) == V2_URI


def test_server_side_dry_run_changes_nothing(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    before = helpers.read_deployment(admin_api, namespace, "model")
    target = dryrun.DryRunTarget(make_target(admin_api, namespace, clock), clock=clock)

    target.set_version("2", V2_URI)

    after = helpers.read_deployment(admin_api, namespace, "model")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert helpers.model_uri_of(after) == V1_URI
    assert target.current_version() == "1"
    [intention] = target.intentions
    assert intention.operation == "set_version"
    assert intention.version == "2"
    assert "dryRun=All accepted" in intention.description


def test_server_side_dry_run_still_reports_an_invalid_change(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI)
    # An environment variable name may not contain a space: only the server's validation says so.
    target = dryrun.DryRunTarget(make_target(admin_api, namespace, clock, env_var="MODEL URI"), clock=clock)
    with pytest.raises(base.TargetError, match="rejected as invalid"):
        target.set_version("2", V2_URI)
    assert target.intentions == []


def test_canary_splits_traffic_by_replicas_and_ends_cleanly(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="1", model_uri=V1_URI, replicas=4)
    helpers.create_deployment(
        admin_api, namespace, "model-canary", version="1", model_uri=V1_URI, replicas=0, track="canary"
    )
    target = make_target(admin_api, namespace, clock, canary_deployment="model-canary")
    assert target.traffic() == base.TrafficSplit("1")

    target.set_traffic(base.TrafficSplit("1", "2", 25), V2_URI)

    stable = helpers.read_deployment(admin_api, namespace, "model")
    canary = helpers.read_deployment(admin_api, namespace, "model-canary")
    assert (stable.spec.replicas, canary.spec.replicas) == (3, 1)
    assert helpers.model_uri_of(canary) == V2_URI
    assert helpers.model_uri_of(stable) == V1_URI
    assert target.traffic() == base.TrafficSplit("1", "2", 25)

    target.set_traffic(base.TrafficSplit("1", "2", 50), V2_URI)
    assert target.traffic() == base.TrafficSplit("1", "2", 50)

    target.set_traffic(base.TrafficSplit("1"), None)  # abort: all traffic back to stable

    stable = helpers.read_deployment(admin_api, namespace, "model")
    canary = helpers.read_deployment(admin_api, namespace, "model-canary")
    assert (stable.spec.replicas, canary.spec.replicas) == (4, 0)
    assert target.traffic() == base.TrafficSplit("1")


def test_set_traffic_refuses_a_stale_stable_version(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_deployment(admin_api, namespace, "model", version="3", model_uri=V1_URI)
    helpers.create_deployment(
        admin_api, namespace, "model-canary", version="3", model_uri=V1_URI, replicas=0, track="canary"
    )
    target = make_target(admin_api, namespace, clock, canary_deployment="model-canary")
    with pytest.raises(base.TargetError, match="names stable version 1 but 3 is serving"):
        target.set_traffic(base.TrafficSplit("1", "2", 10), V2_URI)

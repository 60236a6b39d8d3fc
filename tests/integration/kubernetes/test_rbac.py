"""Least privilege: the chart's Role is enough for the targets and the leader, and no more.

The Role is taken from the rendered chart, created in a fresh namespace and bound to the agent
token's user; everything below then runs with the agent's token against the real RBAC
authorizer.
"""

from __future__ import annotations

from collections.abc import Callable

import helm_python
import pytest
from kubernetes import client as k8s_client

from actions.targets import base, dryrun, kserve
from actions.targets import kubernetes as k8s_target
from agent.runtime import leader
from tests.infra import kube
from tests.support.k8s import chart_rbac, helpers

pytestmark = pytest.mark.e2e

V1_URI = "s3://models/churn/1"
V2_URI = "s3://models/churn/2"


def assert_forbidden(request: Callable[[], object]) -> None:
    with pytest.raises(k8s_client.ApiException) as raised:
        request()
    assert raised.value.status == 403, raised.value.body


@pytest.fixture
def agent_api(kube_apiserver: kube.KubeAPIServer) -> k8s_client.ApiClient:
    return kube_apiserver.agent_client()


def test_deployment_target_and_leader_work_with_the_role_and_nothing_else_does(
    admin_api: k8s_client.ApiClient,
    agent_api: k8s_client.ApiClient,
    namespace: str,
    clock: helpers.ManualClock,
) -> None:
    helpers.create_deployment(admin_api, namespace, "model-server", version="1", model_uri=V1_URI, replicas=4)
    helpers.create_deployment(
        admin_api, namespace, "model-canary", version="1", model_uri=V1_URI, replicas=0, track="canary"
    )
    helpers.create_deployment(admin_api, namespace, "other-model", version="9", model_uri="s3://other/9")
    apps = k8s_client.AppsV1Api(agent_api)
    assert_forbidden(lambda: apps.read_namespaced_deployment("model-server", namespace))  # before the grant

    chart_rbac.grant_chart_role(
        admin_api, agent_api, namespace, {"target": {"kubernetes": {"canaryDeployment": "model-canary"}}}
    )

    target = k8s_target.KubernetesDeploymentTarget(
        agent_api,
        namespace=namespace,
        deployment="model-server",
        container="model",
        canary_deployment="model-canary",
        clock=clock,
    )
    dryrun.DryRunTarget(target, clock=clock).set_version("2", V2_URI)  # dryRun=All needs the same verbs
    target.set_traffic(base.TrafficSplit("1", "2", 25), V2_URI)
    assert target.traffic() == base.TrafficSplit("1", "2", 25)
    target.set_version("2", V2_URI)
    assert target.current_version() == "2"
    assert target.rollout_status().phase is base.RolloutPhase.PROGRESSING

    candidate = leader.LeaderElector(
        agent_api, namespace, "drift-agent", "pod-a", lease_duration_s=15, renew_deadline_s=10,
        retry_period_s=2, clock=clock, wall_clock=clock,
    )  # fmt: skip
    assert candidate.try_acquire_or_renew()  # create
    clock.advance(2)
    assert candidate.try_acquire_or_renew()  # renew
    candidate.release()
    assert lease_holder(admin_api, namespace) is None

    core = k8s_client.CoreV1Api(agent_api)
    event = {
        "metadata": {"generateName": "drift-agent-"},
        "involvedObject": {"kind": "Deployment", "name": "model-server", "namespace": namespace},
        "reason": "ModelRollback",
        "message": "rolled back to version 1",
        "type": "Normal",
    }
    core.create_namespaced_event(namespace, helpers.build(k8s_client.CoreV1Event, event))

    # Everything else is refused.
    other = k8s_target.KubernetesDeploymentTarget(
        agent_api, namespace=namespace, deployment="other-model", container="model", clock=clock
    )
    with pytest.raises(base.TargetError, match="forbidden"):
        other.set_version("8", "s3://other/8")
    assert_forbidden(lambda: apps.delete_namespaced_deployment("model-server", namespace))
    assert_forbidden(lambda: apps.list_namespaced_deployment(namespace))  # only named ones, via get
    assert_forbidden(lambda: core.list_namespaced_secret(namespace))
    assert_forbidden(lambda: core.read_namespaced_config_map("anything", namespace))
    assert_forbidden(core.list_namespace)
    assert_forbidden(lambda: core.list_namespaced_pod("default"))
    assert_forbidden(
        lambda: k8s_client.CoordinationV1Api(agent_api).read_namespaced_lease(
            "kube-controller-manager", namespace
        )
    )
    assert_forbidden(
        lambda: k8s_client.BatchV1Api(agent_api).create_namespaced_job(
            namespace, helpers.build(k8s_client.V1Job, {"metadata": {"name": "retrain"}})
        )
    )
    assert_forbidden(
        lambda: k8s_client.RbacAuthorizationV1Api(agent_api).create_namespaced_role(
            namespace, helpers.build(k8s_client.V1Role, {"metadata": {"name": "escalate"}, "rules": []})
        )
    )
    # A different namespace: the Role is namespaced.
    elsewhere = helpers.create_namespace(admin_api)
    helpers.create_deployment(admin_api, elsewhere, "model-server", version="1", model_uri=V1_URI)
    assert_forbidden(lambda: apps.read_namespaced_deployment("model-server", elsewhere))


def lease_holder(admin: k8s_client.ApiClient, namespace: str) -> str | None:
    lease = k8s_client.CoordinationV1Api(admin).read_namespaced_lease("drift-agent", namespace)
    holder: str | None = lease.to_dict()["spec"].get("holder_identity")
    return holder


@pytest.mark.usefixtures("kserve_crd")
def test_kserve_target_works_with_the_role(
    admin_api: k8s_client.ApiClient,
    agent_api: k8s_client.ApiClient,
    namespace: str,
    clock: helpers.ManualClock,
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri="gs://m/3")
    helpers.create_inferenceservice(admin_api, namespace, "fraud", version="7", storage_uri="gs://m/7")
    chart_rbac.grant_chart_role(
        admin_api,
        agent_api,
        namespace,
        {"target": {"kind": "kserve", "kserve": {"inferenceService": "churn"}}},
    )

    target = kserve.KServeInferenceServiceTarget(agent_api, namespace=namespace, name="churn", clock=clock)
    target.set_traffic(base.TrafficSplit("3", "4", 10), "gs://m/4")
    target.set_traffic(base.TrafficSplit("3"), None)
    assert target.traffic() == base.TrafficSplit("3")

    other = kserve.KServeInferenceServiceTarget(agent_api, namespace=namespace, name="fraud", clock=clock)
    with pytest.raises(base.TargetError, match="forbidden"):
        other.current_version()
    # A KServe-mode Role grants nothing on Deployments.
    assert_forbidden(lambda: k8s_client.AppsV1Api(agent_api).read_namespaced_deployment("churn", namespace))


def test_retrain_jobs_are_granted_only_with_the_kubernetes_runner(
    admin_api: k8s_client.ApiClient, agent_api: k8s_client.ApiClient, namespace: str
) -> None:
    chart_rbac.grant_chart_role(admin_api, agent_api, namespace, {"retrain": {"runner": "kubernetes"}})
    batch = k8s_client.BatchV1Api(agent_api)
    job = {
        "metadata": {"generateName": "retrain-"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "train", "image": "trainer:1"}]}
            }
        },
    }
    name = batch.create_namespaced_job(namespace, helpers.build(k8s_client.V1Job, job)).to_dict()["metadata"][
        "name"
    ]
    assert batch.read_namespaced_job(name, namespace).to_dict()["metadata"]["name"] == name
    batch.delete_namespaced_job(name, namespace)
    # What the runner never does is not granted: listing or watching Jobs, or touching their pods.
    assert_forbidden(lambda: batch.list_namespaced_job(namespace))
    assert_forbidden(lambda: k8s_client.CoreV1Api(agent_api).list_namespaced_pod(namespace))
    assert_forbidden(lambda: k8s_client.CoreV1Api(agent_api).list_namespaced_secret(namespace))


def test_the_chart_installs_with_the_generated_kubeconfig(
    kube_apiserver: kube.KubeAPIServer, admin_api: k8s_client.ApiClient, namespace: str
) -> None:
    helm = helm_python.Config(kubeconfig_path=kube_apiserver.kubeconfig_path(), namespace=namespace)
    helm.install(
        chart_rbac.CHART_PATH,
        "drift",
        {"target": {"kubernetes": {"deployment": "churn"}}},
        namespace=namespace,
    )

    role = (
        k8s_client.RbacAuthorizationV1Api(admin_api)
        .read_namespaced_role("drift-drift-agent", namespace)
        .to_dict()
    )
    deployment_rule = next(rule for rule in role["rules"] if rule["resources"] == ["deployments"])
    assert deployment_rule["resource_names"] == ["churn"]
    account = k8s_client.CoreV1Api(admin_api).read_namespaced_service_account("drift-drift-agent", namespace)
    assert account.to_dict()["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

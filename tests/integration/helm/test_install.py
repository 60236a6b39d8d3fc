"""Install and upgrade the chart into a real kube-apiserver (etcd behind it, no kubelet).

Objects are read back with the admin client; the chart's own RBAC is exercised by impersonating
the ServiceAccount the chart creates, so the RoleBinding, not a test grant, is what is proven.
"""

from __future__ import annotations

import copy
import json
import pathlib
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes import client as k8s_client

from actions.targets import base as target_base
from actions.targets import kubernetes as k8s_target
from tests.infra import kube
from tests.support.helm import chart, samples
from tests.support.k8s import helpers

pytestmark = pytest.mark.e2e

CRD_DIR = pathlib.Path(__file__).resolve().parent / "crds"
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


@pytest.fixture(scope="session")
def monitoring_crds(admin_api: k8s_client.ApiClient) -> None:
    """ServiceMonitor and PrometheusRule types, as the Prometheus Operator would register them."""
    extensions = k8s_client.ApiextensionsV1Api(admin_api)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        names.append(body["metadata"]["name"])
        try:
            extensions.create_custom_resource_definition(
                helpers.build(k8s_client.V1CustomResourceDefinition, body)
            )
        except k8s_client.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the API server serves a CRD once it is Established
        established = [
            any(
                c["type"] == "Established" and c["status"] == "True"
                for c in extensions.read_custom_resource_definition(name).to_dict()["status"]["conditions"]
                or []
            )
            for name in names
        ]
        if all(established):
            return
        time.sleep(0.05)
    raise RuntimeError(f"CRDs {names} did not become Established within 30 s")


@pytest.fixture
def helm(kube_apiserver: kube.KubeAPIServer, namespace: str) -> Iterator[helm_python.Config]:
    with helm_python.Config(kubeconfig_path=kube_apiserver.kubeconfig_path(), namespace=namespace) as config:
        yield config


def sidecar_values(**top: Any) -> dict[str, Any]:
    values = copy.deepcopy(samples.SIDECAR) | copy.deepcopy(MONITORING)
    values.update(top)
    return values


def read_as_admin(kube_apiserver: kube.KubeAPIServer, path: str) -> dict[str, Any]:
    """GET an API path as admin (for groups the typed client lacks, e.g. policy/v1beta1)."""
    request = urllib.request.Request(kube_apiserver.url + path)
    request.add_header("Authorization", f"Bearer {kube_apiserver.admin.token}")
    context = ssl.create_default_context(cafile=str(kube_apiserver.ca_path))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        data: dict[str, Any] = json.load(response)
    return data


def custom_object(admin: k8s_client.ApiClient, namespace: str, plural: str) -> dict[str, Any]:
    found = k8s_client.CustomObjectsApi(admin).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, plural, chart.FULLNAME
    )
    assert isinstance(found, dict)
    return found


def impersonating(kube_apiserver: kube.KubeAPIServer, user: str) -> k8s_client.ApiClient:
    api = kube_apiserver.admin_client()
    api.default_headers["Impersonate-User"] = user
    return api


def assert_forbidden(request: Callable[[], object]) -> None:
    with pytest.raises(k8s_client.ApiException) as raised:
        request()
    assert raised.value.status == 403, raised.value.body


def config_map_text(admin: k8s_client.ApiClient, namespace: str, suffix: str, key: str) -> str:
    config_map = k8s_client.CoreV1Api(admin).read_namespaced_config_map(
        f"{chart.FULLNAME}-{suffix}", namespace
    )
    text: str = (config_map.data or {})[key]
    return text


def deployment_state(admin: k8s_client.ApiClient, namespace: str, name: str) -> tuple[int, str]:
    deployment = k8s_client.AppsV1Api(admin).read_namespaced_deployment(name, namespace).to_dict()
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/drift-agent-config"]
    return deployment["metadata"]["generation"], checksum


@pytest.mark.usefixtures("monitoring_crds")
def test_install_creates_every_object_and_the_chart_role_is_what_the_agent_runs_with(
    kube_apiserver: kube.KubeAPIServer,
    admin_api: k8s_client.ApiClient,
    namespace: str,
    helm: helm_python.Config,
) -> None:
    release = helm.install(chart.CHART_PATH, chart.RELEASE, sidecar_values(), namespace=namespace)
    assert (release["status"], release["revision"]) == ("deployed", 1)

    apps, core = k8s_client.AppsV1Api(admin_api), k8s_client.CoreV1Api(admin_api)
    deployment = apps.read_namespaced_deployment("churn-server", namespace).to_dict()
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["model", "drift-agent"]
    assert pod["termination_grace_period_seconds"] == 35
    agent = pod["containers"][1]
    assert agent["security_context"]["read_only_root_filesystem"] is True
    assert agent["readiness_probe"]["http_get"]["path"] == "/healthz"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    for suffix in ("config", "policy", "overrides", "dashboard"):
        core.read_namespaced_config_map(f"{chart.FULLNAME}-{suffix}", namespace)
    service = core.read_namespaced_service(f"{chart.FULLNAME}-metrics", namespace).to_dict()
    assert service["spec"]["ports"][0]["target_port"] == "agent-metrics"
    # A 1.20 API server has no policy/v1: the chart picked v1beta1 from the live capabilities.
    pdb = read_as_admin(
        kube_apiserver, f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets/{chart.FULLNAME}"
    )
    assert pdb["spec"]["maxUnavailable"] == 1
    monitor = custom_object(admin_api, namespace, "servicemonitors")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rule = custom_object(admin_api, namespace, "prometheusrules")
    assert rule["spec"]["groups"][0]["rules"][0]["alert"] == "DriftAgentDown"

    # The agent's identity is the chart's ServiceAccount, bound by the chart's RoleBinding.
    account = deployment["spec"]["template"]["spec"]["service_account_name"]
    core.read_namespaced_service_account(account, namespace)
    as_agent = impersonating(kube_apiserver, f"system:serviceaccount:{namespace}:{account}")
    target = k8s_target.KubernetesDeploymentTarget(
        as_agent,
        namespace=namespace,
        deployment="churn-server",
        container="model",
        clock=helpers.ManualClock(),
    )
    assert target.current_version() == "3"  # the annotation the chart set from serving.modelVersion
    assert target.rollout_status().phase is not target_base.RolloutPhase.FAILED
    agent_core = k8s_client.CoreV1Api(as_agent)
    assert_forbidden(lambda: agent_core.list_namespaced_secret(namespace))
    assert_forbidden(lambda: agent_core.read_namespaced_config_map(f"{chart.FULLNAME}-overrides", namespace))
    assert_forbidden(
        lambda: k8s_client.AppsV1Api(as_agent).delete_namespaced_deployment("churn-server", namespace)
    )
    assert_forbidden(agent_core.list_namespace)

    # The model server's container has no API token (the pod mounts none; the agent container
    # mounts its own projected one), so whatever it sends arrives as system:anonymous.
    assert pod["automount_service_account_token"] is False
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert token_dir in [m["mount_path"] for m in agent["volume_mounts"]]
    assert not any(
        m["mount_path"].startswith("/var/run/secrets") for m in pod["containers"][0]["volume_mounts"] or []
    )
    (token,) = [v for v in pod["volumes"] if v["name"] == "drift-agent-api-token"]
    assert token["projected"]["sources"][0]["service_account_token"]["expiration_seconds"] == 3607
    anonymous = kube_apiserver.anonymous_client()
    serving_apps, serving_core = k8s_client.AppsV1Api(anonymous), k8s_client.CoreV1Api(anonymous)
    patch = {"metadata": {"annotations": {"drift-agent.io/model-version": "666"}}}
    assert_forbidden(lambda: serving_apps.patch_namespaced_deployment("churn-server", namespace, patch))
    assert_forbidden(lambda: serving_apps.read_namespaced_deployment("churn-server", namespace))
    assert_forbidden(lambda: serving_core.list_namespaced_pod(namespace))
    assert_forbidden(lambda: serving_core.list_namespaced_secret(namespace))


def test_upgrade_rewrites_the_config_and_rolls_pods_only_for_settings(
    admin_api: k8s_client.ApiClient, namespace: str, helm: helm_python.Config
) -> None:
    values = sidecar_values(metrics={})
    helm.install(chart.CHART_PATH, chart.RELEASE, values, namespace=namespace)
    generation, checksum = deployment_state(admin_api, namespace, "churn-server")

    # On-call mutes a model: the override ConfigMap changes, the pods are left alone.
    muted = {
        "mute": [{"model": "churn", "until": "2030-01-31T18:00:00Z", "reason": "DATA-123", "by": "alice"}]
    }
    helm.upgrade(chart.CHART_PATH, chart.RELEASE, values | {"overrides": muted}, namespace=namespace)
    assert yaml.safe_load(config_map_text(admin_api, namespace, "overrides", "overrides.yaml")) == muted
    assert deployment_state(admin_api, namespace, "churn-server") == (generation, checksum)

    # A settings change rewrites agent.yaml and rolls the pods (new template -> new generation).
    resized = copy.deepcopy(values | {"overrides": muted})
    resized["agent"]["window"] = {"size": 5000}
    helm.upgrade(chart.CHART_PATH, chart.RELEASE, resized, namespace=namespace)
    settings = yaml.safe_load(config_map_text(admin_api, namespace, "config", "agent.yaml"))
    assert settings["window"] == {"size": 5000}
    new_generation, new_checksum = deployment_state(admin_api, namespace, "churn-server")
    assert new_generation == generation + 1
    assert new_checksum != checksum
    assert [revision["revision"] for revision in helm.history(chart.RELEASE)] == [1, 2, 3]


def test_an_upgrade_never_silently_undoes_a_rollback_the_agent_made(
    kube_apiserver: kube.KubeAPIServer,
    admin_api: k8s_client.ApiClient,
    namespace: str,
    helm: helm_python.Config,
) -> None:
    values = sidecar_values(metrics={})
    helm.install(chart.CHART_PATH, chart.RELEASE, values, namespace=namespace)
    account = f"system:serviceaccount:{namespace}:{chart.FULLNAME}"
    target = k8s_target.KubernetesDeploymentTarget(
        impersonating(kube_apiserver, account),
        namespace=namespace,
        deployment="churn-server",
        container="model",
        clock=helpers.ManualClock(),
    )
    target.set_version("2", "s3://models/churn/2")  # what a rollback does, with the chart's Role

    # Helm 4 applies server-side: the fields the agent changed now belong to it, and an upgrade
    # that still says version 3 is refused instead of quietly re-deploying the bad version.
    resized = copy.deepcopy(values)
    resized["agent"]["window"] = {"size": 5000}
    with pytest.raises(helm_python.HelmReleaseError) as refused:
        helm.upgrade(chart.CHART_PATH, chart.RELEASE, resized, namespace=namespace)
    assert 'env[name="MODEL_URI"]' in str(refused.value)
    assert helpers.model_uri_of(helpers.read_deployment(admin_api, namespace, "churn-server")) == (
        "s3://models/churn/2"
    )

    # Recording the rollback in the values (the README's procedure) lets upgrades through again.
    resized["serving"] |= {"modelUri": "s3://models/churn/2", "modelVersion": "2"}
    helm.upgrade(chart.CHART_PATH, chart.RELEASE, resized, namespace=namespace)
    assert helpers.model_uri_of(helpers.read_deployment(admin_api, namespace, "churn-server")) == (
        "s3://models/churn/2"
    )
    assert target.current_version() == "2"
    assert yaml.safe_load(config_map_text(admin_api, namespace, "config", "agent.yaml"))["window"] == {
        "size": 5000
    }

"""Building blocks for the API-server tests: a manual clock, objects, and the kubelet's part.

There is no kubelet or controller-manager here, so tests play the Deployment controller
themselves by patching the status subresource with the admin client.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import uuid
from typing import Any, TypeVar

import pydantic
import yaml
from kubernetes import client as k8s_client

MERGE_PATCH = "application/merge-patch+json"
CRD_PATH = pathlib.Path(__file__).parent / "crds" / "inferenceservice.yaml"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def build(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """A typed client model from manifest-style data (camelCase keys, as in YAML)."""
    return model.model_validate(data)


@dataclasses.dataclass
class ManualClock:
    """Seconds; moves only when a test says so."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def create_namespace(admin: k8s_client.ApiClient, prefix: str = "t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    k8s_client.CoreV1Api(admin).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name))
    )
    return name


def create_deployment(
    admin: k8s_client.ApiClient,
    namespace: str,
    name: str,
    *,
    version: str | None,
    model_uri: str = "",
    replicas: int = 2,
    image: str = "registry.local/models/server:1.0",
    track: str = "stable",
) -> Any:
    """A model-server Deployment; every track shares the `app` label one Service would select."""
    annotations = {"drift-agent.io/model-version": version} if version is not None else None
    env = [k8s_client.V1EnvVar(name="MODEL_URI", value=model_uri)] if model_uri else None
    labels = {"app": "model", "track": track}
    body = k8s_client.V1Deployment(
        metadata=k8s_client.V1ObjectMeta(name=name, annotations=annotations),
        spec=k8s_client.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(
                metadata=k8s_client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=k8s_client.V1PodSpec(
                    containers=[
                        k8s_client.V1Container(name="model", image=image, env=env),
                        k8s_client.V1Container(name="drift-agent", image="drift-agent:0.1.0"),
                    ]
                ),
            ),
        ),
    )
    return k8s_client.AppsV1Api(admin).create_namespaced_deployment(namespace, body)


def read_deployment(admin: k8s_client.ApiClient, namespace: str, name: str) -> Any:
    return k8s_client.AppsV1Api(admin).read_namespaced_deployment(name, namespace)


def model_uri_of(deployment: Any, container: str = "model") -> str | None:
    for candidate in deployment.spec.template.spec.containers:
        if candidate.name == container:
            for env in candidate.env or []:
                if env.name == "MODEL_URI":
                    return str(env.value)
    return None


def set_deployment_status(
    admin: k8s_client.ApiClient,
    namespace: str,
    name: str,
    *,
    observed_generation: int | None = None,
    replicas: int,
    updated: int,
    available: int,
    conditions: list[dict[str, str]] | None = None,
) -> None:
    """Play the Deployment controller: report rollout progress in .status."""
    apps = k8s_client.AppsV1Api(admin)
    generation = apps.read_namespaced_deployment(name, namespace).to_dict()["metadata"]["generation"]
    status: dict[str, Any] = {
        "observedGeneration": observed_generation if observed_generation is not None else generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "readyReplicas": available,
    }
    if conditions is not None:
        status["conditions"] = [
            {"lastUpdateTime": "2027-01-15T08:00:00Z", "lastTransitionTime": "2027-01-15T08:00:00Z", **c}
            for c in conditions
        ]
    apps.patch_namespaced_deployment_status(name, namespace, {"status": status}, _content_type=MERGE_PATCH)


def install_inferenceservice_crd(admin: k8s_client.ApiClient) -> None:
    extensions = k8s_client.ApiextensionsV1Api(admin)
    body = build(k8s_client.V1CustomResourceDefinition, yaml.safe_load(CRD_PATH.read_text(encoding="utf-8")))
    try:
        extensions.create_custom_resource_definition(body)
    except k8s_client.ApiException as exc:
        if exc.status != 409:
            raise
    # The API server serves the new type only once its own controller marks it Established.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition("inferenceservices.serving.kserve.io").to_dict()
        if any(
            c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"] or []
        ):
            return
        time.sleep(0.05)
    raise RuntimeError("the InferenceService CRD did not become Established within 30 s")


def create_inferenceservice(
    admin: k8s_client.ApiClient, namespace: str, name: str, *, version: str, storage_uri: str
) -> dict[str, Any]:
    body = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {"drift-agent.io/model-version": version, "drift-agent.io/model-uri": storage_uri},
        },
        "spec": {"predictor": {"model": {"modelFormat": {"name": "pytorch"}, "storageUri": storage_uri}}},
    }
    created = k8s_client.CustomObjectsApi(admin).create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", body
    )
    assert isinstance(created, dict)
    return created


def read_inferenceservice(admin: k8s_client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = k8s_client.CustomObjectsApi(admin).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
    )
    assert isinstance(obj, dict)
    return obj


def set_inferenceservice_status(
    admin: k8s_client.ApiClient, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """Play the KServe controller: report readiness / failures in .status."""
    current = read_inferenceservice(admin, namespace, name)
    full = {"observedGeneration": current["metadata"]["generation"], **status}
    k8s_client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        name,
        {"status": full},
        _content_type=MERGE_PATCH,
    )

"""Deployment targets: where a model version is served and how traffic splits between versions.

``build_target(settings)`` makes the configured one. The Kubernetes client is imported only
when a Kubernetes or KServe target is built, so local mode never pays for it.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from actions.targets import base, dryrun, local

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

DeploymentTarget = base.DeploymentTarget
RolloutPhase = base.RolloutPhase
RolloutStatus = base.RolloutStatus
TrafficSplit = base.TrafficSplit
TargetError = base.TargetError
DryRunTarget = dryrun.DryRunTarget
LocalTarget = local.LocalTarget

KINDS = ("local", "kubernetes", "kserve")


class _Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class KubernetesTargetSettings(_Config):
    namespace: str = pydantic.Field("default", description="Namespace of the model-serving Deployment.")
    deployment: str = pydantic.Field("model-server", description="Name of the model-serving Deployment.")
    container: str = pydantic.Field("model", description="Container in it that loads the model.")
    mode: Literal["env", "image"] = pydantic.Field(
        "env",
        description="env: the model URI goes into env var `env_var`; image: the version is the image tag.",
    )
    env_var: str = pydantic.Field(
        "MODEL_URI", description="Environment variable holding the model URI (mode=env)."
    )
    image_repository: str | None = pydantic.Field(
        None, description="Image repository for mode=image; null = the container's current repository."
    )
    version_annotation: str = pydantic.Field(
        base.VERSION_ANNOTATION, description="Annotation recording which model version the Deployment serves."
    )
    canary_deployment: str | None = pydantic.Field(
        None,
        description="Second Deployment behind the same Service for canaries (split by replicas).",
    )


class KServeTargetSettings(_Config):
    namespace: str = pydantic.Field("default", description="Namespace of the InferenceService.")
    name: str = pydantic.Field("model", description="Name of the InferenceService.")
    version_annotation: str = pydantic.Field(
        base.VERSION_ANNOTATION, description="Annotation recording which model version it serves."
    )


class LocalTargetSettings(_Config):
    path: pathlib.Path = pydantic.Field(
        pathlib.Path(".state/serving.json"), description="JSON file the local (demo) model server reads."
    )
    initial_version: str | None = pydantic.Field(
        None, description="Version written to the file when it does not exist yet."
    )
    initial_model_uri: str = pydantic.Field("", description="Model URI written with initial_version.")
    require_ack: bool = pydantic.Field(
        False, description="A change counts as rolled out only once the server acknowledges it in the file."
    )


class TargetSettings(_Config):
    """Settings group ``target``."""

    kind: Literal["local", "kubernetes", "kserve"] = pydantic.Field(
        "local",
        description="Where the model is served: local (a JSON file), kubernetes (Deployment), kserve.",
    )
    dry_run: bool = pydantic.Field(
        False,
        description="Never change the serving side: writes are checked (server-side dry run) and logged.",
    )
    progress_deadline_s: float = pydantic.Field(
        base.DEFAULT_PROGRESS_DEADLINE_S,
        gt=0,
        description="A rollout not complete this long after a change is FAILED (GPU cold starts are slow).",
    )
    kubeconfig: pathlib.Path | None = pydantic.Field(
        None, description="kubeconfig for kubernetes/kserve; null = the pod's service account (in-cluster)."
    )
    kubernetes: KubernetesTargetSettings = pydantic.Field(
        default_factory=KubernetesTargetSettings, description="The Deployment target (kind=kubernetes)."
    )
    kserve: KServeTargetSettings = pydantic.Field(
        default_factory=KServeTargetSettings, description="The InferenceService target (kind=kserve)."
    )
    local: LocalTargetSettings = pydantic.Field(
        default_factory=LocalTargetSettings, description="The local target (kind=local)."
    )


# Every Kubernetes call the agent makes gives up after this (connect, read) unless the caller
# passes its own: an API server that holds a connection open must not hold a rollback, a canary
# step or the main loop with it.
DEFAULT_REQUEST_TIMEOUT_S = (5.0, 30.0)


def api_client_from(settings: TargetSettings) -> k8s_client.ApiClient:
    """An API client from the configured kubeconfig, or the pod's service account.

    Its calls carry ``DEFAULT_REQUEST_TIMEOUT_S`` unless they pass ``_request_timeout``.
    """
    from kubernetes import client as k8s_client  # noqa: PLC0415  (heavy: only for cluster targets)
    from kubernetes import config as k8s_config  # noqa: PLC0415

    configuration = k8s_client.Configuration()
    if settings.kubeconfig is not None:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration
        )
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as exc:
            raise base.TargetError(
                f"target.kind={settings.kind} needs cluster credentials: not running in a pod ({exc}); "
                "set target.kubeconfig to a kubeconfig file"
            ) from exc
    return with_request_timeout(k8s_client.ApiClient(configuration), DEFAULT_REQUEST_TIMEOUT_S)


def with_request_timeout(api: k8s_client.ApiClient, timeout_s: tuple[float, float]) -> k8s_client.ApiClient:
    """``api``, whose calls without their own ``_request_timeout`` get ``timeout_s``."""
    call_api = api.call_api

    def timed(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None and len(args) < 6:
            kwargs["_request_timeout"] = timeout_s
        return call_api(*args, **kwargs)

    api.call_api = timed  # type: ignore[method-assign]
    return api


def build_target(
    settings: TargetSettings,
    *,
    api_client: k8s_client.ApiClient | None = None,
    clock: base.Clock = base.SYSTEM_CLOCK,
) -> base.DeploymentTarget:
    """The configured target, wrapped in a DryRunTarget when ``settings.dry_run``."""
    target: base.DeploymentTarget
    if settings.kind == "local":
        target = local.LocalTarget(
            settings.local.path,
            initial_version=settings.local.initial_version,
            initial_model_uri=settings.local.initial_model_uri,
            require_ack=settings.local.require_ack,
            progress_deadline_s=settings.progress_deadline_s,
            clock=clock,
        )
    elif settings.kind == "kubernetes":
        from actions.targets import kubernetes as k8s_target  # noqa: PLC0415

        options = settings.kubernetes
        target = k8s_target.KubernetesDeploymentTarget(
            api_client or api_client_from(settings),
            namespace=options.namespace,
            deployment=options.deployment,
            container=options.container,
            mode=options.mode,
            env_var=options.env_var,
            version_annotation=options.version_annotation,
            image_repository=options.image_repository,
            canary_deployment=options.canary_deployment,
            progress_deadline_s=settings.progress_deadline_s,
            clock=clock,
        )
    elif settings.kind == "kserve":
        from actions.targets import kserve  # noqa: PLC0415

        target = kserve.KServeInferenceServiceTarget(
            api_client or api_client_from(settings),
            namespace=settings.kserve.namespace,
            name=settings.kserve.name,
            version_annotation=settings.kserve.version_annotation,
            progress_deadline_s=settings.progress_deadline_s,
            clock=clock,
        )
    else:  # unreachable through validated settings; kept for callers building settings by hand
        raise ValueError(f"target.kind must be one of {list(KINDS)}, got {settings.kind!r}")
    return dryrun.DryRunTarget(target, clock=clock) if settings.dry_run else target


__all__ = [
    "KINDS",
    "DeploymentTarget",
    "DryRunTarget",
    "KServeTargetSettings",
    "KubernetesTargetSettings",
    "LocalTarget",
    "LocalTargetSettings",
    "RolloutPhase",
    "RolloutStatus",
    "TargetError",
    "TargetSettings",
    "TrafficSplit",
    "api_client_from",
    "build_target",
]

"""A model served by a Kubernetes Deployment (optionally with a canary Deployment).

Which version serves is recorded in an annotation (``drift-agent.io/model-version``) on the
Deployment and on its pod template; the model itself reaches the pods either through an
environment variable holding the model URI (``mode="env"``) or through the image tag
(``mode="image"``). Changing either changes the pod template, so the Deployment controller
rolls the pods.

Canary: a second Deployment carries the canary version; both match one Service's selector, so
traffic splits by ready replicas. ``set_traffic`` scales the two so their sum stays the total
the stable Deployment had when the canary started.

Every write is a strategic-merge patch that carries the ``resourceVersion`` it was computed
from: if someone else changed the Deployment in between, the API server answers 409 and the
patch is recomputed from a fresh read (a human's ``kubectl rollout`` is never overwritten
blindly). Dry runs send the same patch with ``dryRun=All``: the server checks permissions,
admission and validation but persists nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Literal

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from actions.targets import base

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_FIELD_MANAGER = "drift-agent"

Patch = dict[str, Any]


def api_error(exc: k8s_exceptions.ApiException, action: str, what: str) -> base.TargetError:
    """Turn an API error into a TargetError whose message says what to fix."""
    status = exc.status
    detail = _status_message(exc)
    if status == 404:
        return base.TargetError(
            f"{what} not found ({action}): check the target's namespace and name. {detail}"
        )
    if status == 403:
        return base.TargetError(
            f"{action} on {what} is forbidden for the agent's service account: grant it in the chart's "
            f"Role (rbac.yaml, resourceNames from values). {detail}"
        )
    if status == 401:
        return base.TargetError(
            f"{action} on {what}: the API server rejected the agent's credentials. {detail}"
        )
    if status in {400, 422}:
        return base.TargetError(f"{action} on {what} was rejected as invalid: {detail}")
    retriable = status is None or status >= 500 or status == 429
    return base.TargetError(f"{action} on {what} failed (HTTP {status}): {detail}", retriable=retriable)


def _status_message(exc: k8s_exceptions.ApiException) -> str:
    try:
        payload = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    if isinstance(payload, dict):
        return str(payload.get("message", exc.reason or ""))
    return str(exc.reason or "")


def call(action: str, what: str, request: Callable[[], Any]) -> Any:
    """Run one API request, translating transport and API errors into TargetError."""
    try:
        return request()
    except k8s_exceptions.ApiException as exc:
        raise api_error(exc, action, what) from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # MaxRetryError is not an OSError
        raise base.TargetError(
            f"{action} on {what}: cannot reach the API server ({exc})", retriable=True
        ) from exc


def image_repository(image: str) -> str:
    """``registry:5000/team/model:v3`` -> ``registry:5000/team/model`` (digests are dropped too)."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def image_tag(image: str) -> str | None:
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[colon + 1 :] if colon > slash else None


def changed_at(annotations: dict[str, str] | None) -> float | None:
    raw = (annotations or {}).get(base.CHANGED_AT_ANNOTATION)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def deployment_rollout(deployment: Any, what: str) -> base.RolloutStatus:
    """The controller's view of one Deployment's rollout (the logic of ``kubectl rollout status``)."""
    status = deployment.status
    generation = deployment.metadata.generation or 0
    observed = status.observed_generation if status is not None else None
    if status is None or observed is None or observed < generation:
        return base.RolloutStatus(
            base.RolloutPhase.PROGRESSING,
            f"{what}: waiting for the deployment controller to observe generation {generation}",
        )
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            deadline = deployment.spec.progress_deadline_seconds
            return base.RolloutStatus(
                base.RolloutPhase.FAILED,
                f"{what} exceeded its progress deadline ({deadline} s): {condition.message or 'no message'}. "
                "Look at the new pods' events (image pull, GPU scheduling, readiness probe); "
                "raise progress_deadline_s if the model's cold start is legitimately slower.",
            )
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    if updated < wanted:
        return base.RolloutStatus(
            base.RolloutPhase.PROGRESSING, f"{what}: {updated} of {wanted} new replicas have been updated"
        )
    total = status.replicas or 0
    if total > updated:
        return base.RolloutStatus(
            base.RolloutPhase.PROGRESSING, f"{what}: {total - updated} old replicas are pending termination"
        )
    available = status.available_replicas or 0
    if available < updated:
        return base.RolloutStatus(
            base.RolloutPhase.PROGRESSING, f"{what}: {available} of {updated} updated replicas are available"
        )
    return base.RolloutStatus(base.RolloutPhase.COMPLETE, f"{what}: {updated} replicas updated and available")


def past_deadline(
    status: base.RolloutStatus, started: float | None, now: float, deadline_s: float, what: str
) -> base.RolloutStatus:
    """Fail a rollout still progressing ``deadline_s`` after the agent's change."""
    if status.phase is not base.RolloutPhase.PROGRESSING or started is None:
        return status
    waited = now - started
    if waited <= deadline_s:
        return status
    return base.RolloutStatus(
        base.RolloutPhase.FAILED,
        f"{what}: rollout not complete {waited:.0f} s after the change (progress_deadline_s="
        f"{deadline_s:.0f}); last state: {status.message}",
    )


def combine(statuses: list[base.RolloutStatus]) -> base.RolloutStatus:
    for phase in (base.RolloutPhase.FAILED, base.RolloutPhase.PROGRESSING):
        matching = [status.message for status in statuses if status.phase is phase]
        if matching:
            return base.RolloutStatus(phase, "; ".join(matching))
    return base.RolloutStatus(base.RolloutPhase.COMPLETE, "; ".join(status.message for status in statuses))


def replicas_for(total: int, percent: int) -> tuple[int, int]:
    """(stable, canary) replica counts approximating ``percent`` of ``total`` on the canary.

    Both sides keep at least one replica while the split is strictly between 0 and 100, so a
    one-replica model grows to two during its canary.
    """
    if percent >= 100:
        return 0, max(total, 1)
    canary = max(1, math.ceil(total * percent / 100))
    stable = max(1, total - canary)
    return stable, canary


class KubernetesDeploymentTarget(base.DeploymentTarget):
    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        namespace: str,
        deployment: str,
        container: str,
        mode: Literal["env", "image"] = "env",
        env_var: str = "MODEL_URI",
        version_annotation: str = base.VERSION_ANNOTATION,
        image_repository: str | None = None,
        canary_deployment: str | None = None,
        progress_deadline_s: float = base.DEFAULT_PROGRESS_DEADLINE_S,
        max_conflict_retries: int = 5,
        field_manager: str = DEFAULT_FIELD_MANAGER,
        clock: base.Clock = base.SYSTEM_CLOCK,
    ) -> None:
        if mode not in ("env", "image"):
            raise ValueError(
                f"mode must be 'env' (model URI in an env var) or 'image' (version as tag), got {mode!r}"
            )
        if progress_deadline_s <= 0:
            raise ValueError(f"progress_deadline_s must be positive, got {progress_deadline_s}")
        self.namespace = base.require_text(namespace, "namespace")
        self.deployment = base.require_text(deployment, "deployment")
        self.container = base.require_text(container, "container")
        self.canary_deployment = canary_deployment
        self.mode = mode
        self.env_var = env_var
        self.version_annotation = version_annotation
        self.image_repository = image_repository
        self.progress_deadline_s = progress_deadline_s
        self.max_conflict_retries = max_conflict_retries
        self.field_manager = field_manager
        self._apps = k8s_client.AppsV1Api(api_client)
        self._clock = clock
        self.conflicts_seen = 0  # 409s answered with a fresh read; exposed for metrics and tests

    def describe(self) -> str:
        canary = f" (canary {self.canary_deployment})" if self.canary_deployment else ""
        return f"deployment {self.namespace}/{self.deployment}{canary}"

    # -- reads ----------------------------------------------------------------------------

    def read_deployment(self, name: str) -> Any:
        return call(
            "get",
            f"deployment {self.namespace}/{name}",
            lambda: self._apps.read_namespaced_deployment(name, self.namespace),
        )

    def current_version(self) -> str:
        return self._version_of(self.read_deployment(self.deployment), self.deployment)

    def traffic(self) -> base.TrafficSplit:
        stable = self.read_deployment(self.deployment)
        stable_version = self._version_of(stable, self.deployment)
        if self.canary_deployment is None:
            return base.TrafficSplit(stable_version)
        canary = self.read_deployment(self.canary_deployment)
        canary_replicas = canary.spec.replicas or 0
        if canary_replicas == 0:
            return base.TrafficSplit(stable_version)
        stable_replicas = stable.spec.replicas or 0
        # The split is what the replicas give, not what was asked for: that is what serves.
        percent = round(100 * canary_replicas / (stable_replicas + canary_replicas))
        return base.TrafficSplit(
            stable_version, self._version_of(canary, self.canary_deployment), max(1, percent)
        )

    def rollout_status(self) -> base.RolloutStatus:
        names = [self.deployment]
        if self.canary_deployment is not None:
            names.append(self.canary_deployment)
        statuses = []
        for name in names:
            deployment = self.read_deployment(name)
            what = f"deployment {self.namespace}/{name}"
            status = deployment_rollout(deployment, what)
            started = changed_at(deployment.metadata.annotations)
            statuses.append(past_deadline(status, started, self._clock(), self.progress_deadline_s, what))
        return combine(statuses)

    # -- writes ---------------------------------------------------------------------------

    def set_version(self, version: str, model_uri: str) -> None:
        self._set_version(version, model_uri, dry_run=False)

    def set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> None:
        self._set_traffic(split, canary_model_uri, dry_run=False)

    def preview_set_version(self, version: str, model_uri: str) -> str:
        changed = self._set_version(version, model_uri, dry_run=True)
        verb = "would set" if changed else "already serves"
        return f"{self.describe()}: {verb} version {version} ({model_uri}) (dryRun=All accepted)"

    def preview_set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> str:
        self._set_traffic(split, canary_model_uri, dry_run=True)
        return (
            f"{self.describe()}: would route {split.canary_percent}% to canary {split.canary_version}; "
            "accepted by the API server (dryRun=All)"
        )

    def _set_version(self, version: str, model_uri: str, *, dry_run: bool) -> bool:
        base.require_text(version, "version")
        if self.mode == "env":
            base.require_text(model_uri, "model_uri")
        changed = self.patch_with_retry(
            self.deployment, lambda current: self._version_patch(current, version, model_uri), dry_run=dry_run
        )
        if self.canary_deployment is not None:
            changed = self._end_canary(dry_run=dry_run) or changed
        return changed

    def _set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None, *, dry_run: bool) -> None:
        serving = self.current_version()
        if split.stable_version != serving:
            raise base.TargetError(
                f"set_traffic names stable version {split.stable_version} but {serving} is serving "
                f"{self.describe()}: change the stable version with set_version first"
            )
        if not split.has_canary:
            if self.canary_deployment is not None:
                self._end_canary(dry_run=dry_run)
            return
        if self.canary_deployment is None:
            raise base.TargetError(
                f"{self.describe()} has no canary Deployment: set target.kubernetes.canary_deployment "
                "to split traffic"
            )
        if self.mode == "env" and not canary_model_uri:
            raise ValueError("canary_model_uri is required when split.canary_percent > 0 in env mode")
        assert split.canary_version is not None  # has_canary guarantees it
        stable = self.read_deployment(self.deployment)
        canary = self.read_deployment(self.canary_deployment)
        total = self._total_replicas(stable, canary)
        stable_replicas, canary_replicas = replicas_for(total, split.canary_percent)
        canary_version = split.canary_version
        # Canary up first, stable down second: serving capacity never dips below the total.
        self.patch_with_retry(
            self.canary_deployment,
            lambda current: self._version_patch(
                current, canary_version, canary_model_uri or "", replicas=canary_replicas
            ),
            dry_run=dry_run,
        )
        self.patch_with_retry(
            self.deployment,
            lambda current: self._replicas_patch(current, stable_replicas, total=total),
            dry_run=dry_run,
        )

    def served_percent(self, percent: int) -> base.ServedShare:
        """Replica arithmetic: the canary gets its replicas' share of the pods (the Service spreads
        requests evenly over ready pods), so with 2 replicas a 5% step really serves 50%."""
        if self.canary_deployment is None or percent >= 100:
            return base.ServedShare(percent, float(min(percent, 100)), "exact")
        stable = self.read_deployment(self.deployment)
        canary = self.read_deployment(self.canary_deployment)
        stable_replicas, canary_replicas = replicas_for(self._total_replicas(stable, canary), percent)
        pods = stable_replicas + canary_replicas
        return base.ServedShare(
            percent, 100.0 * canary_replicas / pods, f"{canary_replicas} of {pods} replicas"
        )

    def _end_canary(self, *, dry_run: bool) -> bool:
        assert self.canary_deployment is not None
        stable = self.read_deployment(self.deployment)
        canary = self.read_deployment(self.canary_deployment)
        if (canary.spec.replicas or 0) == 0:
            return False
        total = self._total_replicas(stable, canary)
        # Stable up first, canary down second, for the same reason as above.
        self.patch_with_retry(
            self.deployment, lambda current: self._replicas_patch(current, total, total=None), dry_run=dry_run
        )
        self.patch_with_retry(
            self.canary_deployment,
            lambda current: self._replicas_patch(current, 0, total=None),
            dry_run=dry_run,
        )
        return True

    def patch_with_retry(self, name: str, build: Callable[[Any], Patch | None], *, dry_run: bool) -> bool:
        """Read, compute the patch, write it conditionally; on 409 start again from a fresh read.

        Returns whether a change was sent (False when the Deployment already matched).
        """
        what = f"deployment {self.namespace}/{name}"
        for _attempt in range(self.max_conflict_retries + 1):
            current = self.read_deployment(name)
            patch = build(current)
            if patch is None:
                return False
            patch.setdefault("metadata", {})["resourceVersion"] = current.metadata.resource_version
            try:
                self._apps.patch_namespaced_deployment(
                    name,
                    self.namespace,
                    patch,
                    dry_run="All" if dry_run else None,
                    field_manager=self.field_manager,
                    _content_type=STRATEGIC_MERGE,
                )
            except k8s_exceptions.ApiException as exc:
                if exc.status == 409:
                    self.conflicts_seen += 1
                    continue
                raise api_error(exc, "patch", what) from exc
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                raise base.TargetError(
                    f"patch on {what}: cannot reach the API server ({exc})", retriable=True
                ) from exc
            return True
        raise base.TargetError(
            f"patch on {what} conflicted {self.max_conflict_retries + 1} times in a row: another "
            "controller keeps changing it; try again later",
            retriable=True,
        )

    # -- patch builders -------------------------------------------------------------------

    def _version_patch(
        self, current: Any, version: str, model_uri: str, replicas: int | None = None
    ) -> Patch | None:
        name = current.metadata.name
        container = self._container(current, name)
        annotations = current.metadata.annotations or {}
        container_patch: dict[str, Any] = {"name": self.container}
        if self.mode == "env":
            existing = next((env for env in container.env or [] if env.name == self.env_var), None)
            entry: dict[str, Any] = {"name": self.env_var, "value": model_uri}
            if existing is not None and existing.value_from is not None:
                entry["valueFrom"] = None  # a value and a valueFrom together are invalid
            container_patch["env"] = [entry]
            in_place = existing is not None and existing.value == model_uri
        else:
            repository = self.image_repository or image_repository(container.image or "")
            container_patch["image"] = f"{repository}:{version}"
            in_place = container.image == container_patch["image"]
        template_annotations = current.spec.template.metadata.annotations or {}
        if (
            in_place
            and annotations.get(self.version_annotation) == version
            and template_annotations.get(self.version_annotation) == version
            and (replicas is None or current.spec.replicas == replicas)
        ):
            return None  # already serving it: a repeated call must not restart the rollout
        metadata_annotations = {
            self.version_annotation: version,
            base.MODEL_URI_ANNOTATION: model_uri,
            base.CHANGED_AT_ANNOTATION: f"{self._clock():.3f}",
        }
        previous = annotations.get(self.version_annotation)
        if previous is not None and previous != version:
            metadata_annotations[base.PREVIOUS_VERSION_ANNOTATION] = previous
        spec: dict[str, Any] = {
            "template": {
                "metadata": {"annotations": {self.version_annotation: version}},
                "spec": {"containers": [container_patch]},
            }
        }
        # The controller's own deadline (default 600 s) would fail a slow GPU cold start first.
        wanted_deadline = math.ceil(self.progress_deadline_s)
        if (current.spec.progress_deadline_seconds or 600) < wanted_deadline:
            spec["progressDeadlineSeconds"] = wanted_deadline
        if replicas is not None:
            spec["replicas"] = replicas
        return {"metadata": {"annotations": metadata_annotations}, "spec": spec}

    def _replicas_patch(self, current: Any, replicas: int, *, total: int | None) -> Patch | None:
        annotations = current.metadata.annotations or {}
        recorded = annotations.get(base.TOTAL_REPLICAS_ANNOTATION)
        wanted_record = str(total) if total is not None else None
        if current.spec.replicas == replicas and recorded == wanted_record:
            return None
        return {
            "metadata": {
                "annotations": {
                    base.TOTAL_REPLICAS_ANNOTATION: wanted_record,
                    base.CHANGED_AT_ANNOTATION: f"{self._clock():.3f}",
                }
            },
            "spec": {"replicas": replicas},
        }

    def _total_replicas(self, stable: Any, canary: Any) -> int:
        recorded = (stable.metadata.annotations or {}).get(base.TOTAL_REPLICAS_ANNOTATION)
        if recorded is not None and recorded.isdigit():
            return int(recorded)
        return (stable.spec.replicas or 0) + (canary.spec.replicas or 0) or 1

    def _container(self, deployment: Any, name: str) -> Any:
        containers = deployment.spec.template.spec.containers or []
        for container in containers:
            if container.name == self.container:
                return container
        raise base.TargetError(
            f"deployment {self.namespace}/{name} has no container {self.container!r} "
            f"(it has {[c.name for c in containers]}): set target.kubernetes.container to one of them"
        )

    def _version_of(self, deployment: Any, name: str) -> str:
        annotations = deployment.metadata.annotations or {}
        version = annotations.get(self.version_annotation)
        if version:
            return str(version)
        if self.mode == "image":
            tag = image_tag(self._container(deployment, name).image or "")
            if tag:
                return tag
        raise base.TargetError(
            f"deployment {self.namespace}/{name} does not say which model version it serves: annotate it, "
            f"e.g. kubectl annotate deployment {name} {self.version_annotation}=<version>"
        )

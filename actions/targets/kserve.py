"""A model served by a KServe InferenceService (serving.kserve.io/v1beta1).

KServe's canary semantics: with ``spec.predictor.canaryTrafficPercent`` set, the newest
revision (the current ``storageUri``) receives that share and the previously rolled-out
revision the rest; without it, the newest revision receives everything. So:

- ``set_version`` writes ``storageUri`` and removes ``canaryTrafficPercent`` (100% to it);
- ``set_traffic`` with a canary writes the canary's ``storageUri`` and the percent;
- ending a canary (``set_traffic`` with 0%, or ``set_version`` back to the stable version while
  a canary runs) sends all traffic back to the previous rolled-out revision
  (``canaryTrafficPercent: 0``) *and* reverts ``storageUri`` to the stable model, so the spec
  no longer names the rejected model and a later reconcile cannot promote it.

The stable version, its URI and the canary version are kept as annotations, since KServe's own
status names revisions, not model versions. CRDs take JSON merge patches, not strategic ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from actions.targets import base
from actions.targets import kubernetes as k8s_target

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
# transitionStatus values KServe reports when a model will not load or the spec is invalid.
FAILED_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})

Patch = dict[str, Any]


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return {str(key): str(value) for key, value in annotations.items()}


def _predictor(obj: dict[str, Any]) -> dict[str, Any]:
    predictor = obj.get("spec", {}).get("predictor") or {}
    return predictor if isinstance(predictor, dict) else {}


def _storage_uri(obj: dict[str, Any]) -> str | None:
    model = _predictor(obj).get("model") or {}
    uri = model.get("storageUri") if isinstance(model, dict) else None
    return str(uri) if uri is not None else None


def _canary_active(annotations: dict[str, str], predictor: dict[str, Any]) -> bool:
    return base.CANARY_VERSION_ANNOTATION in annotations or predictor.get("canaryTrafficPercent") not in (
        None,
        0,
    )


class KServeInferenceServiceTarget(base.DeploymentTarget):
    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        namespace: str,
        name: str,
        version_annotation: str = base.VERSION_ANNOTATION,
        progress_deadline_s: float = base.DEFAULT_PROGRESS_DEADLINE_S,
        max_conflict_retries: int = 5,
        field_manager: str = k8s_target.DEFAULT_FIELD_MANAGER,
        clock: base.Clock = base.SYSTEM_CLOCK,
    ) -> None:
        if progress_deadline_s <= 0:
            raise ValueError(f"progress_deadline_s must be positive, got {progress_deadline_s}")
        self.namespace = base.require_text(namespace, "namespace")
        self.name = base.require_text(name, "name")
        self.version_annotation = version_annotation
        self.progress_deadline_s = progress_deadline_s
        self.max_conflict_retries = max_conflict_retries
        self.field_manager = field_manager
        self._custom = k8s_client.CustomObjectsApi(api_client)
        self._clock = clock
        self.conflicts_seen = 0

    def describe(self) -> str:
        return f"inferenceservice {self.namespace}/{self.name}"

    def read(self) -> dict[str, Any]:
        obj = k8s_target.call(
            "get",
            self.describe(),
            lambda: self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            ),
        )
        if not isinstance(obj, dict):
            raise base.TargetError(
                f"{self.describe()}: the API server returned {type(obj).__name__}, not an object"
            )
        return obj

    def current_version(self) -> str:
        return self._stable_version(self.read())

    def traffic(self) -> base.TrafficSplit:
        obj = self.read()
        stable = self._stable_version(obj)
        percent = _predictor(obj).get("canaryTrafficPercent")
        canary = _annotations(obj).get(base.CANARY_VERSION_ANNOTATION)
        if canary is None or not isinstance(percent, int) or percent <= 0:
            return base.TrafficSplit(stable)
        return base.TrafficSplit(stable, canary, min(percent, 100))

    def rollout_status(self) -> base.RolloutStatus:
        obj = self.read()
        what = self.describe()
        status = self._controller_status(obj, what)
        started = k8s_target.changed_at(_annotations(obj))
        return k8s_target.past_deadline(status, started, self._clock(), self.progress_deadline_s, what)

    def set_version(self, version: str, model_uri: str) -> None:
        self._patch_with_retry(
            lambda current: self._version_patch(current, version, model_uri), dry_run=False
        )

    def set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> None:
        self._patch_with_retry(
            lambda current: self._traffic_patch(current, split, canary_model_uri), dry_run=False
        )

    def preview_set_version(self, version: str, model_uri: str) -> str:
        changed = self._patch_with_retry(
            lambda current: self._version_patch(current, version, model_uri), dry_run=True
        )
        verb = "would set" if changed else "already serves"
        return f"{self.describe()}: {verb} version {version} ({model_uri}) (dryRun=All accepted)"

    def preview_set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> str:
        self._patch_with_retry(
            lambda current: self._traffic_patch(current, split, canary_model_uri), dry_run=True
        )
        return (
            f"{self.describe()}: would route {split.canary_percent}% to canary {split.canary_version}; "
            "accepted by the API server (dryRun=All)"
        )

    # -- internals ------------------------------------------------------------------------

    def _stable_version(self, obj: dict[str, Any]) -> str:
        version = _annotations(obj).get(self.version_annotation)
        if not version:
            raise base.TargetError(
                f"{self.describe()} does not say which model version it serves: annotate it, e.g. "
                f"kubectl annotate inferenceservice {self.name} {self.version_annotation}=<version>"
            )
        return version

    def _version_patch(self, current: dict[str, Any], version: str, model_uri: str) -> Patch | None:
        base.require_text(version, "version")
        base.require_text(model_uri, "model_uri")
        annotations = _annotations(current)
        predictor = _predictor(current)
        if annotations.get(self.version_annotation) == version:
            if _canary_active(annotations, predictor):
                # Back to the stable version mid-canary: the instant path, no new revision.
                return self._end_canary_patch(model_uri)
            if _storage_uri(current) == model_uri:
                return None  # already serving it (a pinned 0% included): nothing to redo
        wanted_annotations: dict[str, str | None] = {
            self.version_annotation: version,
            base.MODEL_URI_ANNOTATION: model_uri,
            base.CANARY_VERSION_ANNOTATION: None,
            base.CANARY_MODEL_URI_ANNOTATION: None,
            base.CHANGED_AT_ANNOTATION: f"{self._clock():.3f}",
        }
        previous = annotations.get(self.version_annotation)
        if previous is not None and previous != version:
            wanted_annotations[base.PREVIOUS_VERSION_ANNOTATION] = previous
        # Without canaryTrafficPercent the newest revision (this storageUri) takes all traffic.
        return {
            "metadata": {"annotations": wanted_annotations},
            "spec": {"predictor": {"model": {"storageUri": model_uri}, "canaryTrafficPercent": None}},
        }

    def _traffic_patch(
        self, current: dict[str, Any], split: base.TrafficSplit, canary_model_uri: str | None
    ) -> Patch | None:
        serving = self._stable_version(current)
        if split.stable_version != serving:
            raise base.TargetError(
                f"set_traffic names stable version {split.stable_version} but {serving} is serving "
                f"{self.describe()}: change the stable version with set_version first"
            )
        annotations = _annotations(current)
        predictor = _predictor(current)
        if split.has_canary:
            if not canary_model_uri:
                raise ValueError("canary_model_uri is required when split.canary_percent > 0")
            if (
                annotations.get(base.CANARY_VERSION_ANNOTATION) == split.canary_version
                and _storage_uri(current) == canary_model_uri
                and predictor.get("canaryTrafficPercent") == split.canary_percent
            ):
                return None
            return {
                "metadata": {
                    "annotations": {
                        base.CANARY_VERSION_ANNOTATION: split.canary_version,
                        base.CANARY_MODEL_URI_ANNOTATION: canary_model_uri,
                        base.CHANGED_AT_ANNOTATION: f"{self._clock():.3f}",
                    }
                },
                "spec": {
                    "predictor": {
                        "model": {"storageUri": canary_model_uri},
                        "canaryTrafficPercent": split.canary_percent,
                    }
                },
            }
        if not _canary_active(annotations, predictor):
            return None  # no canary running: nothing to end
        stable_uri = annotations.get(base.MODEL_URI_ANNOTATION)
        if not stable_uri:
            raise base.TargetError(
                f"{self.describe()} has no {base.MODEL_URI_ANNOTATION} annotation, so the stable model's "
                "storageUri cannot be restored: call set_version with the stable version and its URI"
            )
        return self._end_canary_patch(stable_uri)

    def _end_canary_patch(self, stable_uri: str) -> Patch:
        # 0%: the previous rolled-out revision takes all traffic at once, with no cold start;
        # the spec names the stable model again, so no later reconcile can promote the canary.
        return {
            "metadata": {
                "annotations": {
                    base.MODEL_URI_ANNOTATION: stable_uri,
                    base.CANARY_VERSION_ANNOTATION: None,
                    base.CANARY_MODEL_URI_ANNOTATION: None,
                    base.CHANGED_AT_ANNOTATION: f"{self._clock():.3f}",
                }
            },
            "spec": {"predictor": {"model": {"storageUri": stable_uri}, "canaryTrafficPercent": 0}},
        }

    def _controller_status(self, obj: dict[str, Any], what: str) -> base.RolloutStatus:
        status = obj.get("status") or {}
        generation = obj.get("metadata", {}).get("generation") or 0
        observed = status.get("observedGeneration")
        if not isinstance(observed, int) or observed < generation:
            return base.RolloutStatus(
                base.RolloutPhase.PROGRESSING,
                f"{what}: waiting for the KServe controller to observe generation {generation}",
            )
        model_status = status.get("modelStatus") or {}
        transition = model_status.get("transitionStatus")
        if transition in FAILED_TRANSITIONS:
            failure = model_status.get("lastFailureInfo") or {}
            return base.RolloutStatus(
                base.RolloutPhase.FAILED,
                f"{what}: {transition}: {failure.get('reason', '')} {failure.get('message', '')}".rstrip()
                + " (check the storage URI and the predictor pod's logs)",
            )
        ready = next(
            (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"),
            None,
        )
        if ready is not None and ready.get("status") == "True":
            return base.RolloutStatus(base.RolloutPhase.COMPLETE, f"{what}: Ready")
        reason = ready.get("reason", "") if ready else "no Ready condition yet"
        return base.RolloutStatus(base.RolloutPhase.PROGRESSING, f"{what}: not Ready ({reason})")

    def _patch_with_retry(self, build: Callable[[dict[str, Any]], Patch | None], *, dry_run: bool) -> bool:
        for _attempt in range(self.max_conflict_retries + 1):
            current = self.read()
            patch = build(current)
            if patch is None:
                return False
            patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                self._custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    self.name,
                    patch,
                    dry_run="All" if dry_run else None,
                    field_manager=self.field_manager,
                    _content_type=k8s_target.MERGE_PATCH,
                )
            except k8s_exceptions.ApiException as exc:
                if exc.status == 409:
                    self.conflicts_seen += 1
                    continue
                raise k8s_target.api_error(exc, "patch", self.describe()) from exc
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                raise base.TargetError(
                    f"patch on {self.describe()}: cannot reach the API server ({exc})", retriable=True
                ) from exc
            return True
        raise base.TargetError(
            f"patch on {self.describe()} conflicted {self.max_conflict_retries + 1} times in a row: "
            "another writer keeps changing it; try again later",
            retriable=True,
        )

"""Everything around the agent in the retrain/canary e2e run: the serving side and the reading.

The agent under test is the real composition root; these parts play what cannot run here or
is not the agent's:

- ``KubeletStandIn``: no kubelet or Deployment controller runs beside the real API server, so a
  thread marks each new generation of the two Deployments rolled out, once its model has loaded
  (a pod's cold start) and at least ``cold_start_s`` after it appeared.
- ``TrafficGenerator``: the Service and its clients. It reads what serves from the Deployments
  (the version and ``MODEL_URI`` of each one's pod template, split by ready replicas, as a
  Service spreads requests over ready pods), scores requests with that version's model, and logs
  every prediction with the project's own ``drift_logger`` to the real broker; each label follows
  a little later on the labels topic, as ground truth does.
- ``ModelCache``: the models the pods would load. Versions the test knows by label are small
  linear scorers; any other version is loaded from its ``MODEL_URI`` with
  ``mlflow.pyfunc.load_model``, so a retrained candidate serves the weights MLflow holds.
- ``audit_timeline``: the agent's audit log condensed into the moments a reader looks for.

Latency: there is no GPU here, so ``gpu_latency_ms``/``latency_ms`` come from a per-version
``LatencyProfile`` (a seeded log-normal), the one knob the latency scenario turns.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import pathlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kafka
import numpy as np
import numpy.typing as npt
from kubernetes import client as k8s_client

import drift_logger
from actions.canary import state as canary_state
from agent.observability import audit as audit_mod
from demo import pacing
from demo import receiver as receiver_mod
from tests.support.k8s import chart_rbac, helpers

STABLE_DEPLOYMENT = "model-server"
CANARY_DEPLOYMENT = "model-canary"
CONTAINER = "model"
FEATURES = ("x0", "x1", "x2", "x3")
LEASE_NAME = "drift-agent"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Features (rows x FEATURES) in; predicted class and, where the model gives one, its confidence out.
Predictor = Callable[[FloatArray], tuple[IntArray, FloatArray | None]]


# -- the cluster ------------------------------------------------------------------------------------


def create_serving_pair(
    admin: k8s_client.ApiClient, namespace: str, *, version: str, model_uri: str, replicas: int
) -> None:
    """The stable Deployment serving ``version`` and an empty canary Deployment, both rolled out."""
    helpers.create_deployment(
        admin, namespace, STABLE_DEPLOYMENT, version=version, model_uri=model_uri, replicas=replicas
    )
    helpers.create_deployment(
        admin, namespace, CANARY_DEPLOYMENT, version=version, model_uri=model_uri, replicas=0, track="canary"
    )
    for name in (STABLE_DEPLOYMENT, CANARY_DEPLOYMENT):
        wanted = helpers.read_deployment(admin, namespace, name).spec.replicas or 0
        helpers.set_deployment_status(
            admin, namespace, name, replicas=wanted, updated=wanted, available=wanted
        )


def grant_chart_role(admin: k8s_client.ApiClient, agent: k8s_client.ApiClient, namespace: str) -> None:
    """Create the Role the chart renders for this target and bind it to the agent token's user."""
    values = {
        "target": {
            "kind": "kubernetes",
            "kubernetes": {"deployment": STABLE_DEPLOYMENT, "canaryDeployment": CANARY_DEPLOYMENT},
        },
        "leaderElection": {"enabled": True, "leaseName": LEASE_NAME},
    }
    chart_rbac.grant_chart_role(admin, agent, namespace, values)


@dataclasses.dataclass(frozen=True)
class Served:
    """What one Deployment's ready pods serve."""

    deployment: str
    version: str
    model_uri: str
    ready: int


def _template_version(deployment: Any) -> str:
    annotations = deployment.spec.template.metadata.annotations or {}
    return str(annotations.get("drift-agent.io/model-version", ""))


def rolled_out(deployment: Any) -> bool:
    """The Deployment controller's view: this generation observed and every replica available."""
    status = deployment.status
    wanted = deployment.spec.replicas or 0
    return (
        status is not None
        and (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.replicas or 0) == wanted
        and (status.updated_replicas or 0) == wanted
        and (status.available_replicas or 0) == wanted
    )


def served_by(deployment: Any) -> Served:
    return Served(
        deployment.metadata.name,
        _template_version(deployment),
        helpers.model_uri_of(deployment, CONTAINER) or "",
        deployment.status.available_replicas or 0,
    )


# -- models ---------------------------------------------------------------------------------------


def concept_weights(angle_deg: float) -> FloatArray:
    """The labelling rule's direction: x0 alone at 0 degrees, turning towards x1."""
    theta = math.radians(angle_deg)
    return np.array([math.cos(theta), math.sin(theta), 0.0, 0.0])


def linear_model(angle_deg: float = 0.0, sharpness: float = 4.0) -> Predictor:
    """A served scorer that learned the rule at ``angle_deg``; confidence is of the predicted class."""
    weights = concept_weights(angle_deg)

    def predict(features: FloatArray) -> tuple[IntArray, FloatArray | None]:
        positive = 1.0 / (1.0 + np.exp(-sharpness * (features @ weights)))
        predicted = (positive >= 0.5).astype(np.int64)
        return predicted, np.where(predicted == 1, positive, 1.0 - positive)

    return predict


def pyfunc_model(model_uri: str) -> Predictor:
    """The MLflow pyfunc at ``model_uri`` (what a serving pod loads); it predicts classes only."""
    import mlflow.pyfunc
    import pandas as pd

    loaded = mlflow.pyfunc.load_model(model_uri)

    def predict(features: FloatArray) -> tuple[IntArray, FloatArray | None]:
        frame = pd.DataFrame({name: features[:, i] for i, name in enumerate(FEATURES)})
        output = np.asarray(loaded.predict(frame)).reshape(-1)
        # Class names come back as text ("0"/"1" or "0.0"/"1.0"): the server sends numbers.
        return np.array([round(float(value)) for value in output], dtype=np.int64), None

    return predict


class ModelCache:
    """Models by version: built-in scorers by label, anything else loaded once from its URI."""

    def __init__(
        self, builtin: Mapping[str, Predictor], load: Callable[[str], Predictor] = pyfunc_model
    ) -> None:
        self._models = dict(builtin)
        self._load = load
        self._lock = threading.Lock()
        self.loaded_from: dict[str, str] = {}  # version -> URI, for versions loaded through MLflow

    def ensure(self, version: str, model_uri: str) -> Predictor:
        with self._lock:
            found = self._models.get(version)
            if found is None:
                found = self._load(model_uri)
                self._models[version] = found
                self.loaded_from[version] = model_uri
            return found

    def get(self, version: str) -> Predictor | None:
        with self._lock:
            return self._models.get(version)


@dataclasses.dataclass(frozen=True)
class LatencyProfile:
    """Per-request GPU time and end-to-end latency (ms) of one version: seeded log-normals."""

    gpu_median_ms: float = 4.0
    overhead_median_ms: float = 1.5
    spread: float = 0.2

    def draw(self, rng: np.random.Generator, size: int) -> tuple[FloatArray, FloatArray]:
        gpu = self.gpu_median_ms * np.exp(self.spread * rng.normal(size=size))
        overhead = self.overhead_median_ms * np.exp(self.spread * rng.normal(size=size))
        return gpu, gpu + overhead


# -- the kubelet's part -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rollout:
    at: float
    deployment: str
    generation: int
    version: str
    replicas: int


class KubeletStandIn:
    """Marks each new generation of the watched Deployments rolled out once its pods could be ready."""

    def __init__(
        self,
        admin: k8s_client.ApiClient,
        namespace: str,
        cache: ModelCache,
        *,
        names: Iterable[str] = (STABLE_DEPLOYMENT, CANARY_DEPLOYMENT),
        cold_start_s: float = 0.5,
        poll_s: float = 0.1,
    ) -> None:
        self._admin = admin
        self._apps = k8s_client.AppsV1Api(admin)
        self._namespace = namespace
        self._cache = cache
        self._names = tuple(names)
        self._cold_start_s = cold_start_s
        self._first_seen: dict[tuple[str, int], float] = {}
        self.rollouts: list[Rollout] = []
        self.errors: list[str] = []
        self._ticker = pacing.Ticker("kubelet-stand-in", self._tick, poll_s)

    def start(self) -> KubeletStandIn:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()

    def _tick(self) -> None:
        for name in self._names:
            try:
                self._settle(name)
            except Exception as exc:  # reported by the test; the stand-in keeps going
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def _settle(self, name: str) -> None:
        deployment: Any = self._apps.read_namespaced_deployment(name, self._namespace)
        if rolled_out(deployment):
            return
        generation = deployment.metadata.generation or 0
        first = self._first_seen.setdefault((name, generation), time.time())
        wanted = deployment.spec.replicas or 0
        version = _template_version(deployment)
        if wanted > 0:
            # A pod is ready only once its model has loaded: the cold start of the new version.
            self._cache.ensure(version, helpers.model_uri_of(deployment, CONTAINER) or "")
        if time.time() - first < self._cold_start_s:
            return
        helpers.set_deployment_status(
            self._admin, self._namespace, name, replicas=wanted, updated=wanted, available=wanted
        )
        self.rollouts.append(Rollout(time.time(), name, generation, version, wanted))


# -- the traffic ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ConceptRamp:
    """The labelling rule turns by ``max_angle_deg`` over ``ramp_records`` records from ``start``."""

    ramp_records: int
    max_angle_deg: float
    start: int | None = None

    def angles(self, indices: IntArray) -> FloatArray:
        if self.start is None:
            return np.zeros(len(indices))
        progress = np.clip((indices - self.start) / self.ramp_records, 0.0, 1.0)
        angles: FloatArray = progress * self.max_angle_deg
        return angles


class TrafficGenerator:
    """Requests at ``rate`` per second, routed by ready replicas, logged per version, then labelled."""

    def __init__(
        self,
        *,
        admin: k8s_client.ApiClient,
        namespace: str,
        cache: ModelCache,
        bootstrap_servers: str,
        predictions_topic: str,
        labels_topic: str,
        model_name: str,
        seed: int,
        ramp: ConceptRamp | None = None,
        latency: Mapping[str, LatencyProfile] | None = None,
        rate: float = 800.0,
        batch: int = 40,
        label_noise: float = 0.1,
        label_delay_s: float = 0.3,
        view_refresh_s: float = 0.2,
    ) -> None:
        self._apps = k8s_client.AppsV1Api(admin)
        self._namespace = namespace
        self._cache = cache
        self._bootstrap = bootstrap_servers
        self._predictions_topic = predictions_topic
        self._model_name = model_name
        self._rng = np.random.default_rng(seed)
        self.ramp = ramp
        self._latency = dict(latency or {})
        self._batch = batch
        self._label_noise = label_noise
        self._view_refresh_s = view_refresh_s
        self._view: dict[str, Served] = {}
        self._view_read_at = 0.0
        self._loggers: dict[str, drift_logger.PredictionLogger] = {}
        self._producer = kafka.KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
        self._labels = pacing.DelayedLabels(
            label_delay_s, lambda record: self._producer.send(labels_topic, record)
        )
        self._lock = threading.Lock()
        self.index = 0
        self.per_version: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self._ticker = pacing.Ticker("traffic-generator", self._tick, batch / rate)

    def start(self) -> TrafficGenerator:
        self._refresh_view()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        for logger in self._loggers.values():
            logger.close(timeout_s=5)
        self._producer.close(timeout=5)

    def start_ramp(self) -> int:
        """Start the concept ramp at the next request; returns that request's index."""
        assert self.ramp is not None, "this generator has no ConceptRamp"
        with self._lock:
            self.ramp.start = self.index
            return self.index

    def serving(self) -> dict[str, Served]:
        with self._lock:
            return dict(self._view)

    def _tick(self) -> None:
        try:
            if time.monotonic() - self._view_read_at >= self._view_refresh_s:
                self._refresh_view()
            self._serve_batch()
            self._labels.send_due()
        except Exception as exc:  # the test reports these; traffic goes on
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _refresh_view(self) -> None:
        self._view_read_at = time.monotonic()
        view = dict(self._view)
        for name in (STABLE_DEPLOYMENT, CANARY_DEPLOYMENT):
            deployment = self._apps.read_namespaced_deployment(name, self._namespace)
            # Until a new generation is ready, the old pods go on serving what they served.
            if rolled_out(deployment) or name not in view:
                view[name] = served_by(deployment)
        with self._lock:
            self._view = view

    def _serve_batch(self) -> None:
        with self._lock:
            start = self.index
            self.index += self._batch
            view = [served for served in self._view.values() if served.ready > 0]
        if not view:
            return
        indices = np.arange(start, start + self._batch, dtype=np.int64)
        features = self._rng.normal(size=(self._batch, len(FEATURES)))
        angles = self.ramp.angles(indices) if self.ramp is not None else np.zeros(self._batch)
        directions = np.stack([concept_weights(float(a)) for a in angles])
        signal = np.sum(features * directions, axis=1) + self._label_noise * self._rng.normal(
            size=self._batch
        )
        labels = (signal > 0).astype(np.int64)
        # A Service spreads requests over ready pods: each Deployment gets its share of replicas.
        weights = np.array([served.ready for served in view], dtype=np.float64)
        chosen = self._rng.choice(len(view), size=self._batch, p=weights / weights.sum())
        now = time.time()
        for slot, served in enumerate(view):
            rows = np.flatnonzero(chosen == slot)
            if len(rows):
                self._log(served.version, features[rows], labels[rows], now)

    def _log(self, version: str, features: FloatArray, labels: IntArray, now: float) -> None:
        model = self._cache.get(version)
        if model is None:
            raise RuntimeError(f"version {version} serves but no model is loaded for it")
        predicted, confidence = model(features)
        gpu_ms, latency_ms = self._latency.get(version, LatencyProfile()).draw(self._rng, len(labels))
        logger = self._logger(version)
        for row in range(len(labels)):
            request_id = f"v{version}-{self.per_version[version]}"
            logger.log(
                request_id,
                {name: round(float(features[row, i]), 5) for i, name in enumerate(FEATURES)},
                int(predicted[row]),
                confidence=None if confidence is None else round(float(confidence[row]), 5),
                latency_ms=round(float(latency_ms[row]), 4),
                gpu_latency_ms=round(float(gpu_ms[row]), 4),
            )
            self.per_version[version] += 1
            self._labels.add(request_id, int(labels[row]), now)

    def _logger(self, version: str) -> drift_logger.PredictionLogger:
        if version not in self._loggers:
            self._loggers[version] = drift_logger.PredictionLogger(
                self._bootstrap,
                self._predictions_topic,
                model_name=self._model_name,
                model_version=version,
                gpu_timing=False,  # the GPU times come from the version's LatencyProfile
            )
        return self._loggers[version]


# -- reading the audit log --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Moment:
    """One line of a timeline: seconds since the injection, what happened, and its facts."""

    at: float
    what: str
    facts: Mapping[str, Any]

    def __str__(self) -> str:
        return f"{self.at:+7.1f}s  {self.what}"


def _decision_moments(entry: Mapping[str, Any], since: float, last: dict[str, str]) -> list[Moment]:
    moments = []
    for report in entry.get("incidents", []):
        incident = str(report.get("incident_id"))
        event = str(report.get("event"))
        window = str(report.get("window_severity"))
        signature = f"{event}/{window}"
        if event in ("none", "insufficient") or last.get(incident) == signature:
            continue  # one line per change of what the windows say, not one per window
        last[incident] = signature
        effect = report.get("max_effect_size")
        moments.append(
            Moment(
                float(entry["time"]) - since,
                f"incident {incident} {event}: window {window}"
                + (f" (effect {effect:.3f})" if isinstance(effect, int | float) else "")
                + f", incident {report.get('severity')}",
                {
                    "kind": "incident",
                    "incident": incident,
                    "family": incident.split("/")[-2] if incident.count("/") >= 2 else "",
                    "event": event,
                    "window_severity": window,
                    "severity": report.get("severity"),
                },
            )
        )
    planned = [str(action.get("kind")) for action in entry.get("actions", [])]
    if planned:
        moments.append(
            Moment(
                float(entry["time"]) - since,
                f"policy ({entry.get('severity')}, rule {entry.get('rule_id')}) plans {', '.join(planned)}",
                {
                    "kind": "plan",
                    "actions": planned,
                    "severity": entry.get("severity"),
                    "rollback_versions": [
                        action.get("model_version")
                        for action in entry.get("actions", [])
                        if action.get("kind") == "rollback"
                    ],
                },
            )
        )
    return moments


def _action_moment(entry: Mapping[str, Any], since: float, last: dict[str, str]) -> Moment | None:
    if entry.get("duplicate"):
        return None
    request = entry.get("request") or {}
    outcome = entry.get("outcome") or {}
    details = outcome.get("details") or {}
    kind = str(request.get("kind"))
    status = str(outcome.get("status"))
    facts: dict[str, Any] = {
        "kind": "action",
        "action": kind,
        "status": status,
        "reason": details.get("reason"),
    }
    if kind == "canary":
        facts.update(
            phase=details.get("phase"),
            percent=details.get("percent"),
            failed_checks=details.get("failed_checks"),
        )
        waiting = str(details.get("waiting") or "")
        text = f"CANARY {status}: {details.get('phase')} at {details.get('percent')}%"
        text += f", failed checks {details.get('failed_checks')}" if details.get("failed_checks") else ""
        text += f" ({waiting[:70]})" if waiting else ""
        text += f": {str(details.get('why'))[:110]}" if status != "in_progress" and details.get("why") else ""
        signature = f"{status}/{details.get('phase')}/{details.get('percent')}/{details.get('failed_checks')}"
    elif kind == "retrain":
        facts.update(candidate_version=details.get("candidate_version"))
        text = f"RETRAIN {status}: {details.get('reason')}"
        if details.get("candidate_version") is not None:
            text += f", candidate version {details['candidate_version']}"
        signature = f"{status}/{details.get('reason')}"
    else:
        text = f"{kind.upper()} {status}: {str(outcome.get('message', ''))[:110]}"
        signature = f"{status}/{request.get('idempotency_key')}"
    key = f"{kind}/{request.get('idempotency_key')}"
    if last.get(key) == signature:
        return None  # an in-progress action reported again unchanged
    last[key] = signature
    return Moment(float(entry["time"]) - since, text, facts)


def audit_timeline(path: pathlib.Path, since: float) -> list[Moment]:
    """The audit entries at or after ``since`` that change the story, with times relative to it."""
    moments: list[Moment] = []
    last: dict[str, str] = {}
    for entry in audit_mod.read_entries(path):
        stamp = entry.get("time")
        if not isinstance(stamp, int | float) or stamp < since:
            continue
        if entry.get("kind") == audit_mod.DECISION:
            moments.extend(_decision_moments(entry, since, last))
        elif entry.get("kind") == audit_mod.ACTION:
            found = _action_moment(entry, since, last)
            if found is not None:
                moments.append(found)
    return moments


def first(moments: Iterable[Moment], **facts: Any) -> Moment | None:
    """The earliest moment whose facts hold every given value (a callable value is a predicate)."""
    for moment in moments:
        if all(
            value(moment.facts.get(key)) if callable(value) else moment.facts.get(key) == value
            for key, value in facts.items()
        ):
            return moment
    return None


def canary_moments(state: canary_state.CanaryState, since: float) -> list[Moment]:
    """The controller's own record of the canary (its state file), which the audit log lacks."""
    return [
        Moment(
            event.at - since, f"[canary state] {event.what}: {event.detail[:150]}", {"kind": "canary_state"}
        )
        for event in state.history
    ]


def received_moments(received: Iterable[receiver_mod.Received], since: float) -> list[Moment]:
    return [
        Moment(item.at - since, f"[receiver] {item.headline()[:120]}", {"kind": "received"})
        for item in received
    ]


def print_timeline(title: str, *sources: Iterable[Moment]) -> None:
    """Every source merged in time order; audit lines are unmarked, the others say where they come from."""
    print(f"\n== {title} (seconds after the injection) ==")
    for moment in sorted((m for source in sources for m in source), key=lambda m: m.at):
        print(f"  {moment}")

"""Building blocks of the rollback end-to-end test: the world before the run and what it records.

Every part is real (Tansu broker, ``mlflow server``, etcd + kube-apiserver, the agent's own
composition root); only the kubelet is played by a thread, because there is none here.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kafka
from kubernetes import client as k8s_client
from mlflow.tracking import MlflowClient

import drift_logger
from actions import base as actions_base
from actions import model_registry
from agent import settings as settings_mod
from agent.pipeline import engine as engine_mod
from agent.respond import executor
from demo import pacing
from demo import world as demo_world
from tests.e2e import helpers_cluster
from tests.support.k8s import chart_rbac, helpers
from tests.support.registry import helpers as registry_helpers

DEPLOYMENT = "model-server"
CONTAINER = "model"
LEASE = "drift-agent"
REPLICAS = 2
DAY_S = 86_400.0
POLL_S = 0.05  # short polls inside deadline-bounded waits


# -- what the agents did ------------------------------------------------------------------------


class Observer:
    """What one agent evaluated and did, fed by ``app.Agent``'s on_evaluation / on_action hooks."""

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self.evaluations: list[engine_mod.Evaluation] = []
        self.actions: list[executor.Executed] = []

    def on_evaluation(self, evaluation: engine_mod.Evaluation) -> None:
        with self._changed:
            self.evaluations.append(evaluation)
            self._changed.notify_all()

    def on_action(self, done: executor.Executed) -> None:
        with self._changed:
            self.actions.append(done)
            self._changed.notify_all()

    def labelled_windows(self, version: str) -> set[int]:
        """The labelled windows of ``version`` judged here, by the index of their last record."""
        with self._changed:
            return {
                e.window.last_record_index
                for e in self.evaluations
                if e.labelled and e.window.model_version == version
            }

    def outcomes(
        self, kind: actions_base.ActionKind, status: actions_base.OutcomeStatus | None = None
    ) -> list[executor.Executed]:
        with self._changed:
            return [
                done
                for done in self.actions
                if done.request.kind is kind and (status is None or done.outcome.status is status)
            ]


def wait_until(
    changed: threading.Condition, predicate: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Wake on every observed change (and every short poll) until ``predicate`` holds or time is up."""
    deadline = time.monotonic() + timeout_s
    with changed:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            changed.wait(timeout=min(0.5, left))


# -- Kubernetes: least privilege and the kubelet's part -------------------------------------------


def grant_chart_role(admin: k8s_client.ApiClient, agent: k8s_client.ApiClient, namespace: str) -> None:
    """Bind the Role rendered from the Helm chart to the agent token's user, in ``namespace``."""
    values = {
        "target": {"kind": "kubernetes", "kubernetes": {"deployment": DEPLOYMENT, "container": CONTAINER}},
        "leaderElection": {"enabled": True, "leaseName": LEASE},
    }
    chart_rbac.grant_chart_role(admin, agent, namespace, values)


class KubeletStandIn:
    """Plays the Deployment controller and kubelet: every new generation is rolled out at once.

    ``rolled_out`` lists the generations it completed, so the test can count pod-template changes.
    """

    def __init__(self, admin: k8s_client.ApiClient, namespace: str, name: str = DEPLOYMENT) -> None:
        self._admin = admin
        self._namespace = namespace
        self._name = name
        self._apps = k8s_client.AppsV1Api(admin)
        self._ticker = pacing.Ticker("kubelet-stand-in", self._tick, POLL_S)
        self.rolled_out: list[int] = []
        self.errors: list[str] = []

    def __enter__(self) -> KubeletStandIn:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticker.stop()

    def _tick(self) -> None:
        try:
            deployment = self._apps.read_namespaced_deployment(self._name, self._namespace)
            assert deployment.metadata is not None
            generation = int(deployment.metadata.generation or 0)
            observed = deployment.status.observed_generation if deployment.status else None
            if observed != generation:
                helpers.set_deployment_status(
                    self._admin,
                    self._namespace,
                    self._name,
                    replicas=REPLICAS,
                    updated=REPLICAS,
                    available=REPLICAS,
                )
                self.rolled_out.append(generation)
        except k8s_client.ApiException as exc:  # reported by the test, never swallowed silently
            self.errors.append(f"HTTP {exc.status}: {exc.reason}")


# -- the registry's history before the run ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class History:
    model_name: str
    sources: dict[str, str]  # version -> storage URI
    earlier_rollback_key: str


def seed_registry(
    client: MlflowClient, tracking_uri: str, model_name: str, now: float, *, earlier_rollback_key: str
) -> History:
    """Versions 1..5: 1-3 served well in turn, 4 served briefly and was rolled back, 5 serves now.

    Version 4's last clean window is *more recent* than version 3's: only its rolled_back verdict
    keeps it from being chosen, which is what the test proves. The rollback 4 -> 3 is in the
    registry's rollback journal under ``earlier_rollback_key``.
    """
    v3_healthy_at = now - 3 * DAY_S + 3600
    tags: dict[int, dict[str, str]] = {
        1: registry_helpers.served_well(deployed_at=now - 5 * DAY_S, healthy_at=now - 5 * DAY_S + 3600),
        2: registry_helpers.served_well(deployed_at=now - 4 * DAY_S, healthy_at=now - 4 * DAY_S + 3600),
        3: registry_helpers.served_well(deployed_at=now - 3 * DAY_S, healthy_at=v3_healthy_at),
        4: {
            model_registry.TAG_DEPLOYED_AT: json.dumps([now - 2 * DAY_S]),
            model_registry.TAG_HEALTH: model_registry.Health.ROLLED_BACK.value,
            model_registry.TAG_HEALTH_REASON: "accuracy dropped after release",
            model_registry.TAG_HEALTHY_AT: repr(now - 2 * DAY_S + 600),
            model_registry.TAG_HEALTHY_WINDOWS: "5",
            model_registry.TAG_ROLLED_BACK_AT: repr(now - 2 * DAY_S + 1200),
        },
        5: {model_registry.TAG_DEPLOYED_AT: json.dumps([now - 3600.0])},
    }
    versions = registry_helpers.register_remote_versions(client, model_name, 5, tags)
    assert versions == ["1", "2", "3", "4", "5"], versions
    registry = model_registry.ModelRegistry(tracking_uri, model_name, clock=lambda: now)
    # Version 3 went back into service after that earlier rollback; 5 replaced it an hour ago.
    earlier = model_registry.RollbackEntry(
        key=earlier_rollback_key,
        from_version="4",
        to_version="3",
        model_uri=registry_helpers.storage_source(model_name, 3),
        forced=earlier_rollback_key.startswith("force/"),
        reason="performance on all",
        started_at=now - 2 * DAY_S + 1200,
        completed_at=now - 2 * DAY_S + 1300,
        result="succeeded",
        message=f"model {model_name} rolled back from 4 to 3",
    )
    registry.record_rollback(earlier)
    registry.set_alias(model_registry.Alias.CHAMPION, "5")
    sources = {v: registry_helpers.storage_source(model_name, int(v)) for v in versions}
    return History(model_name, sources, earlier.key)


# -- the traffic -------------------------------------------------------------------------------

FEATURES = ("x0", "x1", "x2", "x3")
BLOCK = 500  # equals the window size: every window holds the same input distribution


@dataclasses.dataclass(frozen=True)
class Request:
    request_id: str
    features: dict[str, float]
    prediction: int
    label: int


def traffic(version: str, count: int, *, wrong_every: int, seed: int) -> Iterator[Request]:
    """``count`` requests served by ``version``; exactly one in ``wrong_every`` is mispredicted.

    Inputs are stratified uniform samples (one per 1/BLOCK slot per block), so no window's inputs
    or predictions differ from the reference's: only the accuracy moves between versions.
    """
    if count % BLOCK:
        raise ValueError(f"count must be a multiple of {BLOCK}, got {count}")
    rng = random.Random(seed)
    index = 0
    for _block in range(count // BLOCK):
        columns = {name: _stratified(rng) for name in FEATURES}
        for row in range(BLOCK):
            features = {name: columns[name][row] for name in FEATURES}
            prediction = int(features["x0"] > 0.5)
            label = 1 - prediction if row % wrong_every == 0 else prediction
            yield Request(f"v{version}-{seed}-{index}", features, prediction, label)
            index += 1


def _stratified(rng: random.Random) -> list[float]:
    values = [(slot + rng.random()) / BLOCK for slot in range(BLOCK)]
    rng.shuffle(values)
    return values


def serve(bootstrap: str, topic: str, model_name: str, version: str, requests: list[Request]) -> None:
    """Log the requests the way a model server does (drift_logger), then flush."""
    logger = drift_logger.PredictionLogger(
        bootstrap, topic, model_name=model_name, model_version=version, gpu_timing=False, seed=0
    )
    try:
        for request in requests:
            assert logger.log(request.request_id, request.features, request.prediction)
    finally:
        assert logger.close(timeout_s=30), f"prediction logger for version {version} did not flush"
    stats = logger.stats()
    assert stats.dropped == 0, f"the prediction logger dropped records: {stats}"


def send_labels(bootstrap: str, topic: str, requests: list[Request]) -> None:
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        for request in requests:
            body = {"request_id": request.request_id, "timestamp": time.time(), "label": request.label}
            producer.send(topic, json.dumps(body).encode(), key=request.request_id.encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


# -- settings and records -----------------------------------------------------------------------


def agent_settings(
    identity: str,
    wiring: demo_world.Wiring,
    *,
    namespace: str,
    kubeconfig: pathlib.Path,
    webhook_url: str,
    secret_env: str,
    policy_path: pathlib.Path,
    group: str,
) -> settings_mod.AgentSettings:
    """One sidecar's settings; agents differ only in identity and state directory: like the
    chart's sidecars, they share one consumer group (``group``) and the work."""
    return demo_world.agent_settings(
        demo_world.agent_config(wiring, group_id=group, window=BLOCK, reference_windows=2),
        helpers_cluster.cluster_settings(
            kubeconfig, namespace, lease=LEASE, identity=identity, deployment=DEPLOYMENT, container=CONTAINER
        ),
        {
            "kafka": {"client_id": f"drift-agent-{identity}"},
            "policy": {"path": str(policy_path)},
            "alerting": {
                "sinks": [
                    {"name": "oncall", "type": "webhook", "url": webhook_url, "secret_env": secret_env}
                ],
                "alert_sinks": ["oncall"],
                "page_sinks": ["oncall"],
            },
        },
    )


def read_audit(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def model_uri_env(deployment: Any) -> str | None:
    return helpers.model_uri_of(deployment, CONTAINER)

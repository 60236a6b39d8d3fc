"""Issue "Rollback to a registry version on Kubernetes", item 6, end to end on real parts.

Two agents (the real composition root, ``app.Agent``) share the work as the chart's sidecars
do: one consumer group over the prediction logs, labels and the internal topics of a real Kafka
broker (Tansu), and one Lease on a real kube-apiserver with the least-privilege Role rendered
from the Helm chart, held by the agent that owns the actions partition. The registry is a real
``mlflow server`` holding versions 1..5: 3 served well, 4 was rolled back earlier, 5 serves now.
Version 5's traffic loses 0.10 of accuracy. Whichever agent evaluates the model decides; only the
Lease holder acts: one alert, one rollback to version 3 (not 4), in MLflow aliases and in the
Deployment.
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any

import prometheus_client
import pytest
from kubernetes import client as k8s_client
from mlflow.tracking import MlflowClient

from actions import base as actions_base
from actions import model_registry, targets, vocabulary
from actions import rollback as rollback_mod
from actions.alerts import webhook
from actions.targets import base as target_base
from agent import app, policy
from agent.policy import incidents
from demo import broker
from demo import world as demo_world
from tests.e2e import helpers_rollback as world
from tests.infra import kube
from tests.infra import mlflow_server as mlflow_infra
from tests.support.alerts import receiver as receiver_mod
from tests.support.k8s import helpers as k8s_helpers
from tests.support.registry import helpers as registry_helpers

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = pathlib.Path(__file__).resolve().parents[2]
POLICY_PATH = REPO / "config" / "policy.yaml"
SECRET_ENV = "DRIFT_AGENT_E2E_ROLLBACK_WEBHOOK_SECRET"
SECRET = "e2e-rollback-hmac-secret"
HEALTHY_ACCURACY_EVERY, BAD_ACCURACY_EVERY = 10, 5  # one wrong in 10 (0.90) vs one in 5 (0.80)
ACCURACY_DROP = 1 / BAD_ACCURACY_EVERY - 1 / HEALTHY_ACCURACY_EVERY  # 0.90 - 0.80
V3_REQUESTS = 4 * world.BLOCK  # 2 blocks of reference, 1 labelled baseline, 1 clean labelled window
V5_REQUESTS = 3 * world.BLOCK  # raise_after for the performance rule is 3 drifted windows
WAIT_S = 60.0


def _scraped(registry: prometheus_client.CollectorRegistry) -> prometheus_client.CollectorRegistry:
    """A copy of what ``registry`` exports now (collectors read live state at scrape time)."""
    frozen = prometheus_client.CollectorRegistry()
    families = list(registry.collect())

    class Snapshot(prometheus_client.registry.Collector):
        def collect(self) -> Any:
            return families

    frozen.register(Snapshot())
    return frozen


def performance_rule(config: policy.PolicyConfig) -> policy.Rule:
    return next(rule for rule in config.rules if rule.family == "performance")


def test_severe_accuracy_drop_on_version_5_rolls_back_to_3_once_with_two_agents(
    kafka_broker: broker.EmbeddedBroker,
    topic_name: str,
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    kube_apiserver: kube.KubeAPIServer,
    admin_api: k8s_client.ApiClient,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the shipped policy says this drop is, read from the file rather than assumed.
    policy_config = policy.load_policy(POLICY_PATH)
    rule = performance_rule(policy_config)
    assert rule.effect_size.grade(ACCURACY_DROP) is vocabulary.Severity.SEVERE
    assert policy_config.plans.severe == ("alert", "remediate")
    assert policy_config.remediation.on_sudden == "rollback"

    # -- the world before the run ----------------------------------------------------------
    model_name = registry_helpers.unique_model_name("fraud")
    history = world.seed_registry(
        mlflow_client,
        mlflow_server.tracking_uri,
        model_name,
        time.time(),
        earlier_rollback_key="force/oncall-v4-regression",
    )
    namespace = k8s_helpers.create_namespace(admin_api, "e2e-rollback")
    agent_api = kube_apiserver.agent_client()
    world.grant_chart_role(admin_api, agent_api, namespace)
    k8s_helpers.create_deployment(
        admin_api,
        namespace,
        world.DEPLOYMENT,
        version="5",
        model_uri=history.sources["5"],
        replicas=world.REPLICAS,
    )
    topics = demo_world.Topics(f"{topic_name}-p", f"{topic_name}-l", f"{topic_name}-dlq")
    group = f"{topic_name}-group"
    kafka_broker.create_topics(topics.names())
    receiver = receiver_mod.Receiver()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    kubeconfig = kube_apiserver.kubeconfig_path(kube_apiserver.agent.token)

    changed = threading.Condition()
    observers = {"agent-a": world.Observer(changed), "agent-b": world.Observer(changed)}
    agents: dict[str, app.Agent] = {}
    loops: list[threading.Thread] = []

    def start(identity: str) -> app.Agent:
        wiring = demo_world.Wiring(
            tmp_path / identity,
            kafka_broker.bootstrap_servers,
            topics,
            mlflow_server.tracking_uri,
            model_name,
        )
        settings = world.agent_settings(
            identity,
            wiring,
            namespace=namespace,
            kubeconfig=kubeconfig,
            webhook_url=f"{receiver.url}/hooks/drift",
            secret_env=SECRET_ENV,
            policy_path=POLICY_PATH,
            group=group,
        )
        agent, loop = demo_world.start_agent(
            settings,
            on_evaluation=observers[identity].on_evaluation,
            on_action=observers[identity].on_action,
            loop_name=f"loop-{identity}",
        )
        agents[identity] = agent
        loops.append(loop)
        return agent

    try:
        with world.KubeletStandIn(admin_api, namespace) as kubelet:
            world.wait_until(
                changed, lambda: kubelet.rolled_out == [1], 30, "the initial rollout of version 5"
            )
            start("agent-a")
            start("agent-b")

            def lease_holder() -> str | None:
                return next((name for name, agent in agents.items() if agent.elector.is_leader()), None)

            # The owner of the actions partition campaigns for the Lease and takes it.
            world.wait_until(changed, lambda: lease_holder() is not None, 60, "an agent to take the Lease")

            # -- the traffic: version 3 healthy, then version 5 with the accuracy drop ------
            healthy = list(world.traffic("3", V3_REQUESTS, wrong_every=HEALTHY_ACCURACY_EVERY, seed=3))
            world.serve(kafka_broker.bootstrap_servers, topics.predictions, model_name, "3", healthy)
            world.send_labels(kafka_broker.bootstrap_servers, topics.labels, healthy)
            bad = list(world.traffic("5", V5_REQUESTS, wrong_every=BAD_ACCURACY_EVERY, seed=5))
            world.serve(kafka_broker.bootstrap_servers, topics.predictions, model_name, "5", bad)
            world.send_labels(kafka_broker.bootstrap_servers, topics.labels, bad)

            succeeded = actions_base.OutcomeStatus.SUCCEEDED
            rollback, alert = actions_base.ActionKind.ROLLBACK, actions_base.ActionKind.ALERT
            world.wait_until(
                changed,
                lambda: any(o.outcomes(rollback, succeeded) for o in observers.values()),
                WAIT_S,
                "the rollback to succeed",
            )
            # Every labelled window of version 5 judged (by whichever agent evaluated the model)
            # and the alert answered: nothing more can be planned from this stream.
            world.wait_until(
                changed,
                lambda: (
                    len(set().union(*(o.labelled_windows("5") for o in observers.values())))
                    == V5_REQUESTS // world.BLOCK
                    and any(o.outcomes(alert, None) for o in observers.values())
                ),
                WAIT_S,
                "version 5 judged and the alert answered",
            )
            leader_name = lease_holder()
            assert leader_name is not None
            follower_name = next(name for name in agents if name != leader_name)
            lease = k8s_client.CoordinationV1Api(admin_api).read_namespaced_lease(world.LEASE, namespace)
            assert lease.spec is not None and lease.spec.holder_identity == leader_name
            deployment = k8s_helpers.read_deployment(admin_api, namespace, world.DEPLOYMENT)
            leader_metrics = agents[leader_name].metrics_registry
            follower_metrics = agents[follower_name].metrics_registry
            # Read while the agents still evaluate (their evaluators leave with them).
            leader_evaluated_metrics = _scraped(leader_metrics)
            follower_evaluated_metrics = _scraped(follower_metrics)
            # Stop the follower first: once the leader releases the Lease it could take over.
            for identity in (follower_name, leader_name):
                agents[identity].sidecar.stop_requested.set()
            for loop in loops:
                loop.join(timeout=15)
                assert not loop.is_alive(), f"{loop.name} did not stop within 15 s"
            for identity in (follower_name, leader_name):
                agents.pop(identity).stop()
            assert kubelet.errors == []
            # One pod-template change after the initial rollout: the rollback, applied once.
            assert kubelet.rolled_out == [1, 2]
    finally:
        for agent in agents.values():
            agent.sidecar.stop_requested.set()
        for loop in loops:
            loop.join(timeout=15)
        for agent in agents.values():
            agent.stop()
        receiver.close()

    # -- the Deployment serves version 3 ---------------------------------------------------
    annotations = deployment.metadata.annotations
    assert annotations[target_base.VERSION_ANNOTATION] == "3"
    assert annotations[target_base.PREVIOUS_VERSION_ANNOTATION] == "5"
    assert annotations[target_base.MODEL_URI_ANNOTATION] == history.sources["3"]
    assert deployment.spec.template.metadata.annotations[target_base.VERSION_ANNOTATION] == "3"
    assert world.model_uri_env(deployment) == history.sources["3"]
    assert deployment.metadata.generation == 2

    # -- MLflow: aliases, verdicts, the rollback journal -----------------------------------
    registry = model_registry.ModelRegistry(mlflow_server.tracking_uri, model_name)
    assert registry.aliases() == {"champion": "3", "previous": "5"}
    assert registry.version("5").health is model_registry.Health.ROLLED_BACK
    assert registry.version("4").health is model_registry.Health.ROLLED_BACK
    assert registry.version("3").health is model_registry.Health.HEALTHY
    journal = registry.rollbacks()
    earlier, *new_entries = journal
    assert earlier.key == history.earlier_rollback_key
    assert len(new_entries) == 1, journal
    entry = new_entries[0]
    assert (entry.from_version, entry.to_version, entry.result) == ("5", "3", "succeeded")
    assert entry.forced is False
    assert entry.model_uri == history.sources["3"]

    # -- exactly one rollback ran, on the Lease holder; the other agent executed nothing ----
    # A pending key is handed back to its handler every few seconds while it is in progress,
    # so the journal may answer later copies with the recorded outcome, flagged duplicate.
    leader_succeeded = observers[leader_name].outcomes(rollback, succeeded)
    leader_rollbacks = [done for done in leader_succeeded if not done.outcome.details.get("duplicate")]
    assert len(leader_rollbacks) == 1, leader_succeeded
    assert leader_rollbacks[0].request.idempotency_key == entry.key
    assert leader_rollbacks[0].outcome.details["to_version"] == "3"
    assert observers[follower_name].actions == [], "the agent without the Lease executed something"
    rollback_key = entry.key
    # Versions 3 and 5 both served within the last windows: the incident is version 5's own.
    incident_id = f"{model_name}/performance/all@model_version=5"
    assert rollback_key == f"{incident_id}#1/rollback/v5"

    # -- exactly one notification reached on-call, signed, about this incident -------------
    assert len(receiver.requests) == 1, [r.body[:200] for r in receiver.requests]
    sent = receiver.requests[0]
    assert sent.path == "/hooks/drift"
    assert webhook.verify(
        SECRET.encode(),
        sent.body,
        sent.headers.get(webhook.TIMESTAMP_HEADER.lower()),
        sent.headers.get(webhook.SIGNATURE_HEADER.lower()),
        now=time.time(),
    )
    body: dict[str, Any] = sent.json()
    assert body["schema"] == webhook.SCHEMA
    assert (body["incident_id"], body["event"], body["severity"]) == (
        incident_id,
        "trigger",
        "severe",
    )
    assert body["model_version"] == "5"
    assert "rollback" in body["action"]
    assert SECRET not in sent.body.decode()

    # -- the audit logs: the decision (by the model's evaluator), the action (by the leader) --
    leader_audit = world.read_audit(tmp_path / leader_name / "audit.jsonl")
    follower_audit = world.read_audit(tmp_path / follower_name / "audit.jsonl")
    decisions = [
        line
        for line in leader_audit + follower_audit
        if line["kind"] == "decision" and any(a["idempotency_key"] == rollback_key for a in line["actions"])
    ]
    # One window decided it; after a rebalance its new evaluator may judge it again from the
    # stored state, to the same decision under the same key.
    assert decisions and {line["window"]["records"] for line in decisions} == {
        decisions[0]["window"]["records"]
    }
    decision = decisions[0]
    assert decision["severity"] == "severe"
    assert decision["rule_id"] == rule.id
    assert {a["kind"] for a in decision["actions"]} == {"alert", "rollback"}
    report = next(r for r in decision["incidents"] if r["incident_id"] == incident_id)
    assert report["event"] == "opened"
    assert report["max_effect_size"] == pytest.approx(ACCURACY_DROP, abs=0.02)
    actions = [
        line for line in leader_audit if line["kind"] == "action" and line["idempotency_key"] == rollback_key
    ]
    acted = [line for line in actions if not line["duplicate"]]
    statuses = [line["outcome"]["status"] for line in acted]
    assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1, statuses
    assert set(statuses[:-1]) <= {"in_progress"}, statuses
    assert acted[-1]["outcome"]["details"]["from_version"] == "5"
    assert acted[-1]["outcome"]["details"]["to_version"] == "3"
    assert all(line["outcome"]["status"] == "succeeded" for line in actions if line["duplicate"])
    assert [line for line in follower_audit if line["kind"] == "action"] == []

    # -- metrics ---------------------------------------------------------------------------
    def sample(registry_: prometheus_client.CollectorRegistry, kind: str, status: str) -> float:
        value = registry_.get_sample_value("drift_agent_actions_total", {"kind": kind, "status": status})
        return 0.0 if value is None else value

    # The counter counts every answer, duplicates of the one rollback included.
    assert sample(leader_metrics, "rollback", "succeeded") == len(leader_succeeded) >= 1
    assert sample(leader_metrics, "alert", "succeeded") == 1.0
    assert sample(follower_metrics, "rollback", "succeeded") == 0.0
    assert sample(follower_metrics, "alert", "succeeded") == 0.0
    assert sample(follower_metrics, "rollback", "skipped") == 0.0
    # The severity gauge is the evaluator's: whichever agent evaluates the model exports it.
    severities = [
        m.get_sample_value("drift_agent_severity", {"model": model_name, "family": "performance"})
        for m in (leader_evaluated_metrics, follower_evaluated_metrics)
    ]
    assert vocabulary.Severity.SEVERE.rank in severities, severities


def test_a_fresh_agent_rolls_back_when_an_earlier_agent_used_the_same_incident_key(
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    kube_apiserver: kube.KubeAPIServer,
    admin_api: k8s_client.ApiClient,
) -> None:
    model_name = registry_helpers.unique_model_name("fraud")
    incident = incidents.IncidentState(
        incident_id=f"{model_name}/performance/all", model=model_name, family="performance", group="all"
    )
    incident.epoch = 1  # the first incident a sidecar with an empty state directory opens
    rollback = actions_base.ActionKind.ROLLBACK.value
    # The policy qualifies remediation keys with the version acted on (tests/unit/agent/policy pins that).
    earlier_key = incidents.action_key(incident, rollback, "v4")
    key = incidents.action_key(incident, rollback, "v5")
    # Two days ago an agent (since replaced, its state directory gone) rolled 4 back in epoch 1 too.
    history = world.seed_registry(
        mlflow_client, mlflow_server.tracking_uri, model_name, time.time(), earlier_rollback_key=earlier_key
    )
    namespace = k8s_helpers.create_namespace(admin_api, "e2e-rollback-key")
    agent_api = kube_apiserver.agent_client()
    world.grant_chart_role(admin_api, agent_api, namespace)
    k8s_helpers.create_deployment(
        admin_api, namespace, world.DEPLOYMENT, version="5", model_uri=history.sources["5"]
    )
    target = targets.build_target(
        targets.TargetSettings(
            kind="kubernetes",
            kubernetes=targets.KubernetesTargetSettings(
                namespace=namespace, deployment=world.DEPLOYMENT, container=world.CONTAINER
            ),
        ),
        api_client=agent_api,
    )
    handler = rollback_mod.RollbackHandler(
        model_registry.ModelRegistry(mlflow_server.tracking_uri, model_name), target
    )
    request = actions_base.ActionRequest(
        kind=actions_base.ActionKind.ROLLBACK,
        model_name=model_name,
        idempotency_key=key,
        incident_id=incident.incident_id,
        severity="severe",
        reason="performance on all",
        model_version="5",
    )

    outcome = handler.handle(request, dry_run=False)

    # No kubelet here: the rollout stays in progress once the Deployment points at version 3.
    assert target.current_version() == "3", outcome
    assert outcome.status is actions_base.OutcomeStatus.IN_PROGRESS

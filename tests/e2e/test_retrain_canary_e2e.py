"""Gated retrain and canary redeploy, end to end: the real agent against the real API server.

Two agents (the composition root, ``agent.app.Agent``, with the Kubernetes Deployment target)
share one consumer group as the chart's sidecars do: they read prediction logs and labels from
the real broker, keep the registry in a real MLflow server, and the one holding the Lease acts
with a token bound only to the chart's Role. The model's windows close at its evaluator, which
may be either agent; the canary runs on the Lease holder from the windows the evaluator shares,
and its state lives in Kafka, where the other agent reads it. Around it run
the serving side's stand-ins (``tests.e2e.helpers_canary``): a kubelet that marks rollouts done
and a traffic generator that serves whatever the Deployments say.

1. Gradual concept drift: the performance incident grows until the policy calls it severe and,
   the drift being gradual, plans a RETRAIN; the candidate trains on the recent labelled
   traffic, passes its gates and is registered; a canary moves it through 10/50/100% of the
   replicas and promotes it.
2. A canary whose GPU latency is three times the stable version's fails its latency check
   ``max_failed_checks`` times and is rolled back.

Each prints its timeline from the agents' audit logs, relative to the injection, merged with the
canary controller's own record (its shared state: the audit log sees the canary only through the
CANARY action, re-polled every policy tick) and, in 2, what reached Slack and PagerDuty.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client as k8s_client
from mlflow.tracking import MlflowClient

from actions import base as actions_base
from actions import model_registry
from actions.canary import state as canary_state
from agent import app
from agent import settings as settings_mod
from agent.pipeline import engine as engine_mod
from agent.respond import executor
from demo import broker
from demo import receiver as receiver_mod
from demo import world as demo_world
from tests.e2e import helpers_canary as serving
from tests.e2e import helpers_cluster
from tests.infra import kube
from tests.infra import mlflow_server as mlflow_infra
from tests.support.k8s import helpers
from tests.support.registry import helpers as registry_helpers

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = actions_base.OutcomeStatus.SUCCEEDED
FAILED = actions_base.OutcomeStatus.FAILED

# Ten replicas serve the canary's 10/50/100 % exactly (1, 5, 10 pods); with four, the 10 % step
# would serve 25 % and the canary is refused at planning.
REPLICAS = 10
SINKS = demo_world.ReceiverSinks(
    "DRIFT_E2E_CANARY_SLACK_WEBHOOK_URL", "DRIFT_E2E_CANARY_PAGERDUTY_ROUTING_KEY"
)
# Windows of 1000 records: with Evidently's default tests (normed Wasserstein at 0.1 once the
# reference exceeds 1000 rows) windows of a few hundred raise data drift on stationary traffic.
WINDOW = 1000
AGENT_IDENTITIES = ("drift-agent-e2e-a", "drift-agent-e2e-b")
RATE = 1000.0  # requests per second from the traffic generator
# Deadlines bound every wait; a passing run stays far below them (see the printed timelines).
READY_S = 90.0
RETRAIN_S = 120.0
CANARY_S = 90.0


class Observer:
    """Wakes the test when the agent evaluates a window or finishes an action."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.labelled_windows = 0
        self.windows = 0
        self.actions: list[executor.Executed] = []
        self.executed_by: set[str] = set()  # identities of the agents that ran an action
        self.evaluated_by: set[str] = set()  # ... and of those that judged a window

    def on_evaluation_of(self, identity: str) -> Callable[[engine_mod.Evaluation], None]:
        def on_evaluation(evaluation: engine_mod.Evaluation) -> None:
            with self.changed:
                self.windows += 1
                self.labelled_windows += int(evaluation.labelled)
                self.evaluated_by.add(identity)
                self.changed.notify_all()

        return on_evaluation

    def roles(self) -> str:
        return f"windows judged by {sorted(self.evaluated_by)}, actions run by {sorted(self.executed_by)}"

    def on_action_of(self, identity: str) -> Callable[[executor.Executed], None]:
        def on_action(done: executor.Executed) -> None:
            with self.changed:
                self.actions.append(done)
                self.executed_by.add(identity)
                self.changed.notify_all()

        return on_action

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                found = predicate()
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")
                # Woken by every window and action; the timeout re-checks state kept elsewhere.
                self.changed.wait(timeout=min(0.5, left))

    def finished(
        self, kind: actions_base.ActionKind, *statuses: actions_base.OutcomeStatus
    ) -> executor.Executed | None:
        """The first action of ``kind`` that ended in one of ``statuses``."""
        return next(
            (done for done in self.actions if done.request.kind is kind and done.outcome.status in statuses),
            None,
        )


def running_agent(
    settings: settings_mod.AgentSettings, observer: Observer, identity: str
) -> contextlib.AbstractContextManager[app.Agent]:
    return demo_world.running_agent(
        settings,
        on_evaluation=observer.on_evaluation_of(identity),
        on_action=observer.on_action_of(identity),
        join_timeout_s=20.0,
    )


@pytest.fixture
def namespace(admin_api: k8s_client.ApiClient) -> str:
    return helpers.create_namespace(admin_api, prefix="e2e-canary")


@pytest.fixture
def agent_kubeconfig(
    kube_apiserver: kube.KubeAPIServer, admin_api: k8s_client.ApiClient, namespace: str
) -> pathlib.Path:
    """A kubeconfig for the agent's token, which may do what the chart's Role grants and no more."""
    with kube_apiserver.agent_client() as agent_api:
        serving.grant_chart_role(admin_api, agent_api, namespace)
    return kube_apiserver.kubeconfig_path(kube_apiserver.agent.token)


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> Iterator[receiver_mod.AlertReceiver]:
    """Slack's and PagerDuty's endpoints, played on loopback; the agent's real sinks post to it."""
    receiver = receiver_mod.AlertReceiver().start()
    for name, value in SINKS.environ(receiver.url, "e2e-routing-key").items():
        monkeypatch.setenv(name, value)
    yield receiver
    receiver.stop()


@pytest.fixture
def model_name() -> str:
    return registry_helpers.unique_model_name("e2e-canary")


def register_versions(client: MlflowClient, model_name: str, count: int) -> model_registry.ModelRegistry:
    """Versions 1..count (storage URIs only the generator's built-in scorers stand behind); 1 is champion."""
    registry_helpers.register_remote_versions(client, model_name, count)
    client.set_registered_model_alias(model_name, model_registry.Alias.CHAMPION.value, "1")
    return model_registry.ModelRegistry(client.tracking_uri, model_name)


def wait_until_agents_judge_labelled_windows(observer: Observer, agents: Mapping[str, app.Agent]) -> None:
    observer.wait_for(
        "the reference and two labelled windows (consumer group join included)",
        lambda: any(agent.reference_ready for agent in agents.values()) and observer.labelled_windows >= 2,
        READY_S,
    )


def wait_for_canary_end(
    observer: Observer, agents: Mapping[str, app.Agent], version: str
) -> tuple[float, canary_state.CanaryState]:
    """When the test saw the CANARY action of ``version`` end, and the canary's final state as
    the agent that did not run it reads it from Kafka (the one that did could be gone)."""
    # The executor asks the CANARY handler again every policy tick until the canary ends.
    observer.wait_for(
        f"the CANARY action for version {version} to end",
        lambda: observer.finished(actions_base.ActionKind.CANARY, SUCCEEDED, FAILED),
        CANARY_S,
    )
    finished_at = time.time()
    bystanders = [name for name in agents if name not in observer.executed_by] or list(agents)
    canary = agents[bystanders[0]].remediation.canary
    assert canary is not None
    final = canary.state()
    assert final is not None
    return finished_at, final


def timeline(
    title: str,
    settings: list[settings_mod.AgentSettings],
    final: canary_state.CanaryState,
    injected_at: float,
    finished_at: float,
    *more: Iterable[serving.Moment],
) -> list[serving.Moment]:
    """The agents' audit moments since the injection, printed merged with the canary controller's
    own record, ``more``, and when the test saw the CANARY action end."""
    moments = sorted(
        (moment for each in settings for moment in serving.audit_timeline(each.audit.path, injected_at)),
        key=lambda moment: moment.at,
    )
    serving.print_timeline(
        title,
        moments,
        serving.canary_moments(final, injected_at),
        *more,
        [serving.Moment(finished_at - injected_at, "[test] saw the CANARY action end", {})],
    )
    return moments


def deployments(admin: k8s_client.ApiClient, namespace: str) -> tuple[Any, Any]:
    return (
        helpers.read_deployment(admin, namespace, serving.STABLE_DEPLOYMENT),
        helpers.read_deployment(admin, namespace, serving.CANARY_DEPLOYMENT),
    )


def lease_holder(admin: k8s_client.ApiClient, namespace: str) -> str | None:
    lease = k8s_client.CoordinationV1Api(admin).read_namespaced_lease(serving.LEASE_NAME, namespace)
    return lease.spec.holder_identity if lease.spec is not None else None


def assert_in_order(*moments: serving.Moment | None) -> None:
    missing = [i for i, moment in enumerate(moments) if moment is None]
    assert not missing, f"timeline lacks milestones #{missing}"
    times = [moment.at for moment in moments if moment is not None]
    assert times == sorted(times), "milestones out of order:\n" + "\n".join(str(m) for m in moments)


@dataclasses.dataclass
class World:
    """The real servers and names one scenario runs against."""

    kafka_broker: broker.EmbeddedBroker
    mlflow_server: mlflow_infra.MlflowServer
    mlflow_client: MlflowClient
    admin_api: k8s_client.ApiClient
    namespace: str
    kubeconfig: pathlib.Path
    alerts: receiver_mod.AlertReceiver
    model_name: str
    state: pathlib.Path

    def prepare(
        self, *, versions: int, retrain: dict[str, Any]
    ) -> tuple[model_registry.ModelRegistry, demo_world.Topics, dict[str, settings_mod.AgentSettings]]:
        """Register ``versions`` versions, serve version 1, and build each agent's settings (one
        consumer group, one Lease; each agent its own identity and state directory)."""
        model = register_versions(self.mlflow_client, self.model_name, versions)
        serving.create_serving_pair(
            self.admin_api, self.namespace, version="1", model_uri=model.model_uri("1"), replicas=REPLICAS
        )
        topics = demo_world.Topics.for_stem(self.model_name)
        self.kafka_broker.create_topics(topics.names())
        group = f"drift-agent-{uuid.uuid4().hex[:8]}"

        def settings_of(identity: str) -> settings_mod.AgentSettings:
            wiring = demo_world.Wiring(
                self.state / identity,
                self.kafka_broker.bootstrap_servers,
                topics,
                self.mlflow_server.tracking_uri,
                self.model_name,
            )
            return demo_world.agent_settings(
                demo_world.agent_config(wiring, group_id=group, window=WINDOW, reference_windows=3),
                helpers_cluster.cluster_settings(
                    self.kubeconfig,
                    self.namespace,
                    lease=serving.LEASE_NAME,
                    identity=identity,
                    deployment=serving.STABLE_DEPLOYMENT,
                    container=serving.CONTAINER,
                    canary_deployment=serving.CANARY_DEPLOYMENT,
                ),
                {
                    "kafka": {"client_id": identity},
                    "registry": {"min_healthy_windows": 1},
                    "retrain": retrain,
                    "canary": demo_world.quick_canary(),
                    "alerting": SINKS.alerting(self.alerts.url),
                },
            )

        return model, topics, {identity: settings_of(identity) for identity in AGENT_IDENTITIES}

    @contextlib.contextmanager
    def running(
        self,
        settings: Mapping[str, settings_mod.AgentSettings],
        observer: Observer,
        cache: serving.ModelCache,
        topics: demo_world.Topics,
        *,
        seed: int,
        ramp: serving.ConceptRamp | None = None,
        latency: Mapping[str, serving.LatencyProfile] | None = None,
    ) -> Iterator[tuple[serving.TrafficGenerator, serving.KubeletStandIn, dict[str, app.Agent]]]:
        """The kubelet stand-in and the traffic generator (at ``RATE``) running, then the agents;
        entered once labelled windows are judged. On exit the agents stop, then the rest."""
        generator = serving.TrafficGenerator(
            admin=self.admin_api,
            namespace=self.namespace,
            cache=cache,
            bootstrap_servers=self.kafka_broker.bootstrap_servers,
            model_name=self.model_name,
            seed=seed,
            ramp=ramp,
            latency=latency,
            rate=RATE,
            predictions_topic=topics.predictions,
            labels_topic=topics.labels,
        )
        kubelet = serving.KubeletStandIn(self.admin_api, self.namespace, cache)
        kubelet.start()
        generator.start()
        try:
            with contextlib.ExitStack() as stack:
                agents = {
                    identity: stack.enter_context(running_agent(each, observer, identity))
                    for identity, each in settings.items()
                }
                wait_until_agents_judge_labelled_windows(observer, agents)
                yield generator, kubelet, agents
        finally:
            generator.stop()
            kubelet.stop()


@pytest.fixture
def world(
    kafka_broker: broker.EmbeddedBroker,
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    admin_api: k8s_client.ApiClient,
    namespace: str,
    agent_kubeconfig: pathlib.Path,
    alerts: receiver_mod.AlertReceiver,
    model_name: str,
    tmp_path: pathlib.Path,
) -> World:
    return World(
        kafka_broker,
        mlflow_server,
        mlflow_client,
        admin_api,
        namespace,
        agent_kubeconfig,
        alerts,
        model_name,
        tmp_path,
    )


def test_gradual_concept_drift_retrains_and_promotes_the_candidate_through_a_canary(world: World) -> None:
    admin_api, namespace = world.admin_api, world.namespace
    model, topics, settings = world.prepare(
        versions=1,
        retrain={
            "enabled": True,
            "experiment_name": f"e2e-{world.model_name}",
            # The newest labelled traffic only: the world has moved, older rows teach the old rule.
            "strategy": {"kind": "sliding", "window_records": 2000, "min_train_rows": 200},
            "trainer": {"hidden_sizes": [32], "epochs": 20, "seed": 0},
            "gates": {"latency": {"repeats": 10, "warmup": 2}},
            "runner": {"kind": "subprocess", "work_dir": str(world.state / "retrain"), "timeout_s": 120},
        },
    )
    cache = serving.ModelCache({"1": serving.linear_model(0.0)})
    # 18 degrees costs version 1 about 0.07 accuracy: severe (0.05) but short of critical (0.15).
    ramp = serving.ConceptRamp(ramp_records=12 * WINDOW, max_angle_deg=18.0)
    observer = Observer()
    started = time.time()
    with world.running(settings, observer, cache, topics, seed=11, ramp=ramp) as (generator, kubelet, agents):
        injected_at = time.time()
        injected_index = generator.start_ramp()
        print(
            f"\nagent ready after {injected_at - started:.1f} s; "
            f"concept ramp starts at request {injected_index}"
        )

        retrained = observer.wait_for(
            "a retrained candidate that passed its gates",
            lambda: observer.finished(actions_base.ActionKind.RETRAIN, SUCCEEDED, FAILED),
            RETRAIN_S,
        )
        assert retrained.outcome.status is SUCCEEDED, retrained.outcome
        candidate = str(retrained.outcome.details["candidate_version"])
        finished_at, final = wait_for_canary_end(observer, agents, candidate)
        served_by_generator = dict(generator.per_version)
        stable, canary_deployment = deployments(admin_api, namespace)
        holder = lease_holder(admin_api, namespace)
    assert not generator.errors and not kubelet.errors, (generator.errors[:3], kubelet.errors[:3])

    moments = timeline(
        "gradual concept drift -> retrain -> canary -> promotion, from the audit log",
        list(settings.values()),
        final,
        injected_at,
        finished_at,
    )
    print(f"requests served per version: {served_by_generator}; rollouts: {len(kubelet.rollouts)}")
    print(observer.roles())

    assert final.phase is canary_state.Phase.PROMOTED, final.reason
    # The elected leader acted, through the chart's Role, and it alone.
    assert holder in AGENT_IDENTITIES and observer.executed_by == {holder}
    assert candidate != "1"
    # The candidate that served in the canary is the model MLflow holds for that version.
    assert cache.loaded_from.get(candidate) == model.model_uri(candidate)
    assert served_by_generator.get(candidate, 0) > 0
    assert model.aliases()[model_registry.Alias.CHAMPION.value] == candidate
    assert model.aliases()[model_registry.Alias.PREVIOUS.value] == "1"
    assert stable.metadata.annotations["drift-agent.io/model-version"] == candidate
    assert helpers.model_uri_of(stable) == model.model_uri(candidate)
    assert (stable.spec.replicas, canary_deployment.spec.replicas) == (REPLICAS, 0)

    # Gradual: the performance incident showed windows below severe before the first severe one.
    first_drifted = serving.first(
        moments, kind="incident", family="performance", window_severity=lambda s: s not in (None, "none")
    )
    first_severe = serving.first(moments, kind="incident", family="performance", window_severity="severe")
    assert first_drifted is not None and first_drifted.facts["window_severity"] in ("minor", "moderate"), (
        first_drifted
    )
    planned_retrain = serving.first(moments, kind="plan", actions=lambda kinds: "retrain" in (kinds or ()))
    # The stable version is never rolled back. While the canary serves, the candidate's own
    # per-version incident may plan one (its version is new, so a severe drop reads as sudden); the
    # rollback handler refuses it as stale, since the candidate is not what the target serves: the
    # canary controller alone judges the candidate.
    assert serving.first(moments, action="rollback", status="succeeded") is None
    rollback_of = {v for m in moments if m.facts.get("kind") == "plan" for v in m.facts["rollback_versions"]}
    assert rollback_of <= {candidate}, rollback_of
    retrain_done = serving.first(moments, action="retrain", status="succeeded")
    canary_started = serving.first(moments, action="canary", status="in_progress")
    promoted = serving.first(moments, action="canary", status="succeeded", phase="promoted")
    # (The subprocess runner trains within the first RETRAIN call: no in_progress line before it.)
    assert_in_order(first_drifted, first_severe, planned_retrain, retrain_done, canary_started, promoted)
    # Steps as the controller recorded them (the audit sees the canary only every policy tick).
    advanced = [event.detail for event in final.history if event.what == "advanced"]
    assert advanced == ["10% passed; now 50%", "50% passed; now 100%"], final.history
    seen_percents = [m.facts["percent"] for m in moments if m.facts.get("action") == "canary"]
    assert seen_percents == sorted(seen_percents) and seen_percents[-1] == 100, seen_percents


def test_a_canary_whose_gpu_latency_regresses_is_rolled_back(world: World) -> None:
    admin_api, namespace, model_name = world.admin_api, world.namespace, world.model_name
    model, topics, settings = world.prepare(
        versions=2,
        retrain={"enabled": False},
    )
    # Version 2 answers like version 1 but spends three times as long on the GPU.
    cache = serving.ModelCache({"1": serving.linear_model(0.0), "2": serving.linear_model(0.0)})
    slow = {"2": serving.LatencyProfile(gpu_median_ms=12.0)}
    observer = Observer()
    aliases_before = model.aliases()
    with world.running(settings, observer, cache, topics, seed=12, latency=slow) as (
        generator,
        kubelet,
        agents,
    ):
        injected_at = time.time()
        # What the retrain chain (or an operator) hands the executor: a CANARY of version 2.
        # Asked of either agent: the request goes to the actions topic, the Lease holder runs it.
        agents[AGENT_IDENTITIES[-1]].request(
            actions_base.ActionRequest(
                kind=actions_base.ActionKind.CANARY,
                model_name=model_name,
                idempotency_key=f"{model_name}/e2e/canary-2",
                incident_id=f"{model_name}/release/2",
                severity="minor",
                reason="release version 2 through a canary",
                params={"candidate_version": "2"},
            )
        )
        finished_at, final = wait_for_canary_end(observer, agents, "2")
        health_at_rollback = model.version("2").health
        # The restored split must be what serves: wait for the stable pods, then read the result.
        observer.wait_for(
            "traffic back on version 1 only",
            lambda: {s.version for s in generator.serving().values() if s.ready > 0} == {"1"},
            30.0,
        )
        stable, canary_deployment = deployments(admin_api, namespace)
        received = world.alerts.snapshot()
    assert not generator.errors and not kubelet.errors, (generator.errors[:3], kubelet.errors[:3])

    moments = timeline(
        "canary with a GPU-latency regression -> rollback, from the audit log",
        list(settings.values()),
        final,
        injected_at,
        finished_at,
        serving.received_moments(received, injected_at),
    )

    print(observer.roles())
    assert final.phase is canary_state.Phase.ROLLED_BACK, final.reason
    assert final.failed_checks == 2
    failures = [event.detail for event in final.history if event.what == "check_failed"]
    assert len(failures) == 2 and all("gpu_latency_p95_vs_stable" in detail for detail in failures), failures
    assert (stable.spec.replicas, canary_deployment.spec.replicas) == (REPLICAS, 0)
    assert stable.metadata.annotations["drift-agent.io/model-version"] == "1"
    assert helpers.model_uri_of(stable) == model.model_uri("1")
    aliases = model.aliases()
    assert (
        aliases[model_registry.Alias.CHAMPION.value]
        == aliases_before[model_registry.Alias.CHAMPION.value]
        == "1"
    )
    assert health_at_rollback is model_registry.Health.ROLLED_BACK
    # The verdict must outlive the canary: labels of its traffic arrive after the rollback, and
    # their clean windows must not make version 2 a rollback target again.
    later = model.version("2")
    assert later.health is model_registry.Health.ROLLED_BACK, (
        f"version 2 was rolled back at {later.rolled_back_at} but marked {later.health} at "
        f"{later.healthy_at} by the agent's health recorder (clean labelled windows of its canary "
        "traffic): ModelRegistry.mark_healthy must not overturn a rolled_back verdict"
    )
    # On-call hears of it: the latency incident on the canary's traffic pages through the real sinks.
    latency_pages = [
        item for item in received if item.service == "pagerduty" and "latency" in item.headline()
    ]
    assert latency_pages, [item.headline() for item in received]

    canary_started = serving.first(moments, action="canary", status="in_progress")
    rolled_back = serving.first(moments, action="canary", status="failed", phase="rolled_back")
    paged = serving.first(moments, action="page", status="succeeded")
    assert_in_order(canary_started, rolled_back)
    # The page follows the canary's start (the audit line of the start is written when the
    # handler returns, so the controller's own record of the start is the reference).
    assert paged is not None and paged.at > final.started_at - injected_at
    # The policy's own rollback of the canary's version is refused as stale: it never served.
    assert serving.first(moments, action="rollback", status="succeeded") is None

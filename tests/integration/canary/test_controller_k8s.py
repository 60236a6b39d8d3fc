"""CanaryController against the real API server: a Deployment pair split by replicas, and KServe.

No kubelet or controllers run here, so the tests play them: they report rollout progress in
``.status`` between ticks, and the controller must wait for it before any interval counts.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from kubernetes import client as k8s_client

from actions import model_registry
from actions.canary import controller as controller_mod
from actions.canary import state as state_mod
from actions.targets import base as target_base
from actions.targets import kserve
from actions.targets import kubernetes as k8s_target
from tests.support.canary import factories as f
from tests.support.k8s import helpers
from tests.support.registry import helpers as registry_helpers

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


# Four replicas serve 25/50/100% exactly; the default steps (5, 10, ...) they cannot.
STEPS = [25, 50, 100]


def deployment_pair(
    admin: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    clock: registry_helpers.ManualClock,
    total: int = 4,
) -> k8s_target.KubernetesDeploymentTarget:
    v1 = model.model_uri("1")
    helpers.create_deployment(admin, namespace, "model", version="1", model_uri=v1, replicas=total)
    helpers.create_deployment(
        admin, namespace, "model-canary", version="1", model_uri=v1, replicas=0, track="canary"
    )
    for name in ("model", "model-canary"):
        settle_deployment(admin, namespace, name)
    return k8s_target.KubernetesDeploymentTarget(
        admin,
        namespace=namespace,
        deployment="model",
        container="model",
        canary_deployment="model-canary",
        clock=clock,
    )


def settle_deployment(admin: k8s_client.ApiClient, namespace: str, name: str) -> None:
    """The Deployment controller and kubelet's part: every wanted replica is updated and available."""
    wanted = helpers.read_deployment(admin, namespace, name).spec.replicas or 0
    helpers.set_deployment_status(admin, namespace, name, replicas=wanted, updated=wanted, available=wanted)


def replicas(admin: k8s_client.ApiClient, namespace: str) -> tuple[int, int]:
    return (
        helpers.read_deployment(admin, namespace, "model").spec.replicas,
        helpers.read_deployment(admin, namespace, "model-canary").spec.replicas,
    )


def tick_until_waiting_for_rollout(
    controller: controller_mod.CanaryController, percent: int, expect: str = "waiting for the rollout"
) -> None:
    result = controller.tick(f.healthy(percent))
    assert result.error is None and result.state is not None
    assert result.state.waiting.startswith(expect), result.state.waiting


def test_deployment_canary_moves_replicas_step_by_step_and_promotes(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    target = deployment_pair(admin_api, namespace, model, clock)
    controller = controller_mod.CanaryController(target, model, store_path, f.config(steps=STEPS), clock)
    controller.start("2")
    assert replicas(admin_api, namespace) == (3, 1)
    canary = helpers.read_deployment(admin_api, namespace, "model-canary")
    assert helpers.model_uri_of(canary) == model.model_uri("2")

    seen = []
    for percent in (25, 50, 100):
        seen.append(replicas(admin_api, namespace))
        clock.advance(f.INTERVAL_S)
        # The new canary pods are not ready: a full interval has passed, but none of it counts.
        tick_until_waiting_for_rollout(controller, percent)
        for name in ("model", "model-canary"):
            settle_deployment(admin_api, namespace, name)
        controller.tick(f.healthy(percent))  # ready now: the interval starts
        clock.advance(f.INTERVAL_S)
        controller.tick(f.healthy(percent))  # analysed: next step (or promotion)
    assert seen == [(3, 1), (2, 2), (0, 4)]

    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.PROMOTING
    stable = helpers.read_deployment(admin_api, namespace, "model")
    assert helpers.model_uri_of(stable) == model.model_uri("2")
    assert replicas(admin_api, namespace) == (4, 0)
    tick_until_waiting_for_rollout(controller, 100, "promotion rolling out")  # stable rolls to version 2
    settle_deployment(admin_api, namespace, "model")
    settle_deployment(admin_api, namespace, "model-canary")
    controller.tick(f.healthy(100))
    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.PROMOTED
    assert target.traffic() == target_base.TrafficSplit("2")
    assert model.aliases()["champion"] == "2"


def test_deployment_canary_failing_its_checks_goes_back_to_stable_replicas(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    target = deployment_pair(admin_api, namespace, model, clock)
    controller = controller_mod.CanaryController(
        target, model, store_path, f.config(steps=STEPS, max_failed_checks=1), clock
    )
    controller.start("2")
    for name in ("model", "model-canary"):
        settle_deployment(admin_api, namespace, name)
    clock.advance(f.INTERVAL_S)
    controller.tick(f.healthy(25, canary=f.canary(errors=40)))

    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.ROLLED_BACK
    assert "error_rate" in state.reason
    assert replicas(admin_api, namespace) == (4, 0)
    stable = helpers.read_deployment(admin_api, namespace, "model")
    assert helpers.model_uri_of(stable) == model.model_uri("1")
    assert stable.metadata.annotations["drift-agent.io/model-version"] == "1"
    assert model.aliases()["champion"] == "1"


def test_a_canary_whose_pods_never_become_ready_is_rolled_back_at_the_progress_deadline(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    target = deployment_pair(admin_api, namespace, model, clock)
    controller = controller_mod.CanaryController(target, model, store_path, f.config(steps=STEPS), clock)
    controller.start("2")
    helpers.set_deployment_status(admin_api, namespace, "model-canary", replicas=1, updated=1, available=0)
    clock.advance(600)
    tick_until_waiting_for_rollout(controller, 25)  # still within the 1200 s default deadline
    clock.advance(700)
    controller.tick(f.healthy(25))
    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.ROLLED_BACK
    assert "rollout" in state.reason and "progress_deadline_s=1200" in state.reason
    assert replicas(admin_api, namespace) == (4, 0)


def test_steps_two_replicas_cannot_serve_are_refused_at_planning_naming_the_real_shares(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    target = deployment_pair(admin_api, namespace, model, clock, total=2)
    controller = controller_mod.CanaryController(target, model, store_path, f.config(), clock)  # 5, 10, ...
    with pytest.raises(controller_mod.CanaryPlanError) as refused:
        controller.start("2")
    message = str(refused.value)
    assert "5% asked, 50% served (1 of 2 replicas)" in message and "canary.max_share_error_pct" in message
    assert controller.state() is None and replicas(admin_api, namespace) == (2, 0)  # nothing was touched
    # Steps two replicas can serve go ahead, and the state says what each one really serves.
    controller = controller_mod.CanaryController(target, model, store_path, f.config(steps=[50, 100]), clock)
    controller.start("2")
    state = controller.state()
    assert state is not None and state.share is not None
    assert (state.share.asked, state.share.served, state.share.how) == (50, 50.0, "1 of 2 replicas")
    assert replicas(admin_api, namespace) == (1, 1)
    assert controller_mod.describe(state)["served_percent"] == 50.0


def predictor(admin: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = helpers.read_inferenceservice(admin, namespace, "churn")["spec"]["predictor"]
    return spec


def ready(admin: k8s_client.ApiClient, namespace: str) -> None:
    """The KServe controller's part: the newest revision is ready."""
    helpers.set_inferenceservice_status(
        admin, namespace, "churn", {"conditions": [{"type": "Ready", "status": "True"}]}
    )


@pytest.mark.usefixtures("kserve_crd")
def test_kserve_canary_sets_canary_traffic_percent_then_promotes(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    helpers.create_inferenceservice(
        admin_api, namespace, "churn", version="1", storage_uri=model.model_uri("1")
    )
    target = kserve.KServeInferenceServiceTarget(admin_api, namespace=namespace, name="churn", clock=clock)
    controller = controller_mod.CanaryController(target, model, store_path, f.config(steps=[10, 100]), clock)
    controller.start("2")
    spec = predictor(admin_api, namespace)
    assert (spec["canaryTrafficPercent"], spec["model"]["storageUri"]) == (10, model.model_uri("2"))

    clock.advance(f.INTERVAL_S)
    tick_until_waiting_for_rollout(controller, 10)
    ready(admin_api, namespace)
    for _ in range(2):
        controller.tick(f.healthy(10))
        clock.advance(f.INTERVAL_S)
    assert predictor(admin_api, namespace)["canaryTrafficPercent"] == 100
    ready(admin_api, namespace)
    controller.tick(f.healthy(100))
    clock.advance(f.INTERVAL_S)
    controller.tick(f.healthy(100))  # 100% passed: promote

    spec = predictor(admin_api, namespace)
    assert "canaryTrafficPercent" not in spec and spec["model"]["storageUri"] == model.model_uri("2")
    ready(admin_api, namespace)
    controller.tick(f.healthy(100))
    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.PROMOTED
    assert target.current_version() == "2"
    assert (model.aliases()["champion"], model.aliases()["previous"]) == ("2", "1")


@pytest.mark.usefixtures("kserve_crd")
def test_kserve_canary_rollback_sends_all_traffic_to_the_previous_revision(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    helpers.create_inferenceservice(
        admin_api, namespace, "churn", version="1", storage_uri=model.model_uri("1")
    )
    target = kserve.KServeInferenceServiceTarget(admin_api, namespace=namespace, name="churn", clock=clock)
    controller = controller_mod.CanaryController(target, model, store_path, f.config(), clock)
    controller.start("2")
    ready(admin_api, namespace)
    controller.tick(f.healthy(5, command=state_mod.Command("abort", id="INC-42")))

    spec = predictor(admin_api, namespace)
    assert (spec["canaryTrafficPercent"], spec["model"]["storageUri"]) == (0, model.model_uri("1"))
    assert target.traffic() == target_base.TrafficSplit("1")
    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.ROLLED_BACK and "INC-42" in state.reason
    assert model.version("2").health is model_registry.Health.ROLLED_BACK

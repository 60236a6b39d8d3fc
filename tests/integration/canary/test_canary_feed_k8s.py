"""The agent's canary feed driving the controller on the real API server and MLflow registry:
label-joined windows reach the performance check, and what a step gathers adds up.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import numpy as np
import pytest
from kubernetes import client as k8s_client

from actions import model_registry
from actions.canary import controller as controller_mod
from actions.canary import state as state_mod
from agent import overrides
from agent.respond import canary_feed
from tests.integration.canary.test_controller_k8s import STEPS, deployment_pair, settle_deployment
from tests.support.canary import factories as f
from tests.support.canary.windows import make_window
from tests.support.registry import helpers as registry_helpers

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TICK_WITHIN_S = 20.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TICK_WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {TICK_WITHIN_S}s"
        time.sleep(0.05)


def started_feed(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
    **config: object,
) -> tuple[controller_mod.CanaryController, canary_feed.CanaryFeed]:
    target = deployment_pair(admin_api, namespace, model, clock)
    controller = controller_mod.CanaryController(
        target, model, store_path, f.config(steps=STEPS, **config), clock
    )
    controller.start("2")
    for name in ("model", "model-canary"):
        settle_deployment(admin_api, namespace, name)
    feed = canary_feed.CanaryFeed(
        controller,
        overrides_state=overrides.OverrideState,
        is_leader=lambda: True,
        clock=clock,
        labels_expected=True,
    )
    feed.start()
    return controller, feed


def analysed_since(controller: controller_mod.CanaryController, at: float) -> bool:
    state = controller.state()
    return state is not None and state.last_analysis is not None and state.last_analysis.at >= at


def test_a_regression_only_labels_show_fails_the_canary_and_rolls_it_back(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    controller, feed = started_feed(admin_api, namespace, model, store_path, clock, max_failed_checks=2)
    rng = np.random.default_rng(11)
    try:
        for _ in range(2):
            state = controller.state()
            assert state is not None and state.ready_at is not None
            clock.advance(f.INTERVAL_S)
            at = state.ready_at + 1.0
            # Every record looks the same for both versions: only the labels tell them apart.
            feed.observe(make_window(rng, 2000, version="1", at=at))
            feed.observe(make_window(rng, 600, version="1", accuracy=0.90, at=at), labelled=True)
            feed.observe(make_window(rng, 200, version="2", accuracy=0.75, at=at), labelled=True)
            now = clock()
            feed.observe(make_window(rng, 700, version="2", at=at))
            wait_for(lambda: analysed_since(controller, now), "analysis")  # noqa: B023 - waited for here
    finally:
        feed.stop()
    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.ROLLED_BACK, state
    assert state.failed_checks == 2
    assert state.last_analysis is not None
    [failure] = state.last_analysis.failures
    assert failure.name == "performance" and failure.statistic == "two_proportion_z"
    assert (failure.n_canary, failure.n_stable) == (200, 600)
    assert failure.p_value is not None and failure.p_value < 0.01
    assert "accuracy" in state.reason and "labelled rows" in state.reason
    assert model.aliases()["champion"] == "1"


def test_an_inconclusive_step_keeps_gathering_until_its_checks_can_decide(
    admin_api: k8s_client.ApiClient,
    namespace: str,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    controller, feed = started_feed(admin_api, namespace, model, store_path, clock)
    rng = np.random.default_rng(12)
    try:
        state = controller.state()
        assert state is not None and state.ready_at is not None
        at = state.ready_at + 1.0
        clock.advance(f.INTERVAL_S)
        feed.observe(make_window(rng, 3000, version="1", at=at))
        feed.observe(make_window(rng, 1000, version="1", accuracy=0.9, at=at), labelled=True)
        feed.observe(make_window(rng, 300, version="2", accuracy=0.9, at=at), labelled=True)
        # 150 canary requests: enough for min_samples (50 here), too few for the latency checks (200).
        now = clock()
        feed.observe(make_window(rng, 150, version="2", at=at))
        wait_for(lambda: analysed_since(controller, now), "first analysis")
        state = controller.state()
        assert state is not None and state.percent == 25 and state.failed_checks == 0
        assert state.waiting.startswith("inconclusive at 25%"), state.waiting
        assert state.last_analysis is not None
        assert {c.name for c in state.last_analysis.inconclusive} >= {"gpu_latency_p95_vs_stable"}
        # The next window adds to what the step has: 350 canary requests now, and the step passes.
        clock.advance(1.0)
        now = clock()
        feed.observe(make_window(rng, 200, version="2", at=at + 10))
        wait_for(lambda: analysed_since(controller, now), "second analysis")
    finally:
        feed.stop()
    state = controller.state()
    assert state is not None
    assert state.percent == 50, state.waiting
    assert any(event.what == "advanced" for event in state.history)

"""CanaryController and CanaryHandler against the local (file) target and a real MLflow server."""

from __future__ import annotations

import json
import pathlib

import pytest

from actions import base, model_registry
from actions.canary import controller as controller_mod
from actions.canary import handler as handler_mod
from actions.canary import state as state_mod
from actions.canary import step as step_mod
from actions.targets import base as target_base
from actions.targets import local
from tests.integration.canary.conftest import RecordingAlerts
from tests.support.canary import factories as f
from tests.support.registry import helpers as registry_helpers

pytestmark = pytest.mark.integration


def local_target(tmp_path: pathlib.Path, model: model_registry.ModelRegistry) -> local.LocalTarget:
    return local.LocalTarget(
        tmp_path / "serving.json", initial_version="1", initial_model_uri=model.model_uri("1")
    )


def make_controller(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
    alerts: RecordingAlerts | None = None,
    **config: object,
) -> controller_mod.CanaryController:
    return controller_mod.CanaryController(
        local_target(tmp_path, model), model, store_path, f.config(**config), clock, alert_handler=alerts
    )


def run_healthy(
    controller: controller_mod.CanaryController, clock: registry_helpers.ManualClock
) -> list[int]:
    """Tick a healthy canary to its end; the canary percentages the target served, in order."""
    target = controller.target
    served = [target.traffic().canary_percent]
    for _ in range(20):
        clock.advance(f.INTERVAL_S)
        state = controller.state()
        assert state is not None
        if state.finished:
            return served
        result = controller.tick(f.healthy(state.percent))
        assert result.error is None
        percent = target.traffic().canary_percent
        if percent and percent != served[-1]:
            served.append(percent)
    raise AssertionError("the canary did not finish in 20 intervals")


def test_healthy_canary_is_promoted_and_the_champion_moves(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
    alerts: RecordingAlerts,
) -> None:
    controller = make_controller(tmp_path, model, store_path, clock, alerts)
    started = controller.start("2")
    assert started.state is not None and started.state.pending == ()
    split = controller.target.traffic()
    assert (split.stable_version, split.canary_version, split.canary_percent) == ("1", "2", 5)
    serving = local.read_state(tmp_path / "serving.json")
    assert serving.canary_model_uri == model.model_uri("2")
    assert model.aliases() == {"champion": "1", "challenger": "2"}

    assert run_healthy(controller, clock) == [5, 10, 25, 50, 100]

    final = controller.state()
    assert final is not None and final.phase is state_mod.Phase.PROMOTED
    assert controller.target.traffic() == target_base.TrafficSplit("2")
    assert local.read_state(tmp_path / "serving.json").stable_model_uri == model.model_uri("2")
    aliases = model.aliases()
    assert (aliases["champion"], aliases["previous"]) == ("2", "1")
    promoted_at = next(event.at for event in final.history if event.what == "promoting")
    assert model.version("2").deployed_at == (promoted_at,)
    assert [r.idempotency_key for r in alerts.requests] == [f"canary/{final.canary_id}/promoted"]
    assert alerts.requests[0].params["event"] == "change"


def test_failing_canary_is_rolled_back_and_the_aliases_restored(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
    alerts: RecordingAlerts,
) -> None:
    model.set_alias(model_registry.Alias.PREVIOUS, "1")
    before = model.aliases()
    controller = make_controller(tmp_path, model, store_path, clock, alerts, max_failed_checks=2)
    controller.start("2")
    clock.advance(f.INTERVAL_S)
    controller.tick(f.healthy(5))  # passes: 10%
    assert controller.target.traffic().canary_percent == 10
    slow = f.healthy(10, canary=f.canary(gpu_latency_p95_ms=20.0))
    for _ in range(2):
        clock.advance(f.INTERVAL_S)
        controller.tick(slow)

    state = controller.state()
    assert state is not None and state.phase is state_mod.Phase.ROLLED_BACK
    assert controller.target.traffic() == target_base.TrafficSplit("1")  # canary removed
    aliases = model.aliases()
    assert (aliases["champion"], aliases.get("previous")) == (before["champion"], before["previous"])
    if isinstance(model, controller_mod.AliasRemover):
        assert "challenger" not in aliases
    else:  # ModelRegistry cannot remove an alias yet: it keeps naming the candidate, tagged rolled_back
        assert aliases["challenger"] == "2"
    candidate = model.version("2")
    assert candidate.health is model_registry.Health.ROLLED_BACK
    assert "gpu_latency_p95_vs_stable" in candidate.health_reason
    [alert] = alerts.requests
    assert alert.kind is base.ActionKind.ALERT and alert.severity == "severe"
    assert alert.params["action"] == "rollback" and "gpu_latency_p95_vs_stable" in alert.reason
    # A rejected candidate is never offered as a rollback target again.
    assert model.last_healthy_version() != "2"


def test_a_challenger_from_before_the_canary_is_put_back(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    model.set_alias(model_registry.Alias.CHALLENGER, "1")
    controller = make_controller(tmp_path, model, store_path, clock)
    controller.start("2")
    assert model.aliases()["challenger"] == "2"
    controller.tick(f.healthy(5, command=state_mod.Command("abort", id="stop")))
    assert model.aliases() == {"champion": "1", "challenger": "1"}


def test_restart_after_a_crash_carries_out_what_was_pending(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    first = make_controller(tmp_path, model, store_path, clock)
    first.start("2")
    clock.advance(f.INTERVAL_S)
    first.tick(f.healthy(5))
    assert first.target.traffic().canary_percent == 10

    # The process dies after saving its decision (10% -> 25%) and before touching the target.
    saved = first.state()
    assert saved is not None
    clock.advance(f.INTERVAL_S)
    decided, actions = step_mod.step(saved, f.healthy(10), first.config, clock())
    state_mod.save(
        store_path, state_mod.CanaryState(**{**decided.__dict__, "pending": tuple(f.effects(actions))})
    )
    assert first.target.traffic().canary_percent == 10

    restarted = make_controller(tmp_path, model, store_path, clock)
    result = restarted.tick(f.healthy(25))  # the interval at 25% has not run yet: only the pending write
    assert result.error is None and restarted.target.traffic().canary_percent == 25
    state = restarted.state()
    assert state is not None and state.pending == () and state.percent == 25
    assert run_healthy(restarted, clock)[-1] == 100
    final = restarted.state()
    assert final is not None and final.phase is state_mod.Phase.PROMOTED


def test_state_file_is_plain_json_naming_the_step(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    controller = make_controller(tmp_path, model, store_path, clock)
    controller.start("2")
    data = json.loads(store_path.read_text(encoding="utf-8"))
    assert (data["phase"], data["step_index"], data["steps"][0]) == ("progressing", 0, 5)
    assert data["aliases_before"] == {"champion": "1"}


def test_handler_starts_reports_and_refuses_a_second_candidate(
    tmp_path: pathlib.Path,
    model: model_registry.ModelRegistry,
    store_path: pathlib.Path,
    clock: registry_helpers.ManualClock,
) -> None:
    controller = make_controller(tmp_path, model, store_path, clock)
    handler = handler_mod.CanaryHandler(controller)

    def request(key: str, **params: object) -> base.ActionRequest:
        return base.ActionRequest(
            base.ActionKind.CANARY, model.model_name, key, "inc-1", "severe", "retrained", params=params
        )

    preview = handler.handle(request("k1", candidate_version="2"), dry_run=True)
    assert preview.status is base.OutcomeStatus.SKIPPED and preview.details["reason"] == "dry_run"
    assert "at 5%" in preview.message and not store_path.exists()
    assert controller.target.traffic().canary_percent == 0

    bad = handler.handle(request("k0", candidate_version=""), dry_run=False)
    assert bad.status is base.OutcomeStatus.FAILED and "params.candidate_version" in bad.message
    unknown = handler.handle(request("k0", candidate_version="99"), dry_run=False)
    assert unknown.status is base.OutcomeStatus.FAILED and unknown.details["reason"] == "rejected"

    outcome = handler.handle(request("k1", candidate_version="2"), dry_run=False)
    assert outcome.status is base.OutcomeStatus.IN_PROGRESS
    assert (outcome.details["percent"], outcome.details["canary_id"]) == (5, "k1")
    again = handler.handle(request("k1", candidate_version="2"), dry_run=False)
    assert again.status is base.OutcomeStatus.IN_PROGRESS and controller.target.traffic().canary_percent == 5

    clock.advance(1)
    busy = handler.handle(request("k2", candidate_version="1"), dry_run=False)
    assert busy.status is base.OutcomeStatus.SKIPPED and busy.details["reason"] == "canary_running"

    run_healthy(controller, clock)
    done = handler.handle(request("k1", candidate_version="2"), dry_run=False)
    assert done.status is base.OutcomeStatus.SUCCEEDED and done.details["phase"] == "promoted"

"""RollbackHandler against a real MLflow server and a real (file-backed) LocalTarget.

The served history in every test: versions 1..4 served healthily in turn, 4 was later rolled
back, 5 serves now. An automatic rollback from 5 must go to 3.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from actions import base, model_registry, rollback
from actions.targets import base as target_base
from actions.targets import local
from tests.infra import mlflow_server as mlflow_infra
from tests.support.registry import helpers

pytestmark = pytest.mark.integration

COOLDOWN_S = 300.0
BREAKER_WINDOW_S = 3600.0
ROLLOUT_TIMEOUT_S = 900.0


class SimulatedCrash(BaseException):
    """Stands for the process dying at that point: nothing in the handler may catch it."""


class CountingTarget(local.LocalTarget):
    """The real LocalTarget, counting set_version calls and able to die at a chosen point."""

    def __init__(self, path: pathlib.Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.set_version_calls: list[tuple[str, str]] = []
        self.crash_before_set_version = False
        self.crash_on_rollout_status = False
        self.unreachable_reads = 0  # rollout_status answers TargetError(retriable) this many times
        self.refuse_writes = False  # set_version answers TargetError (not retriable), e.g. RBAC

    def set_version(self, version: str, model_uri: str) -> None:
        if self.crash_before_set_version:
            raise SimulatedCrash("died before the target changed")
        if self.refuse_writes:
            raise target_base.TargetError("forbidden: cannot patch deployments", retriable=False)
        self.set_version_calls.append((version, model_uri))
        super().set_version(version, model_uri)

    def rollout_status(self) -> target_base.RolloutStatus:
        if self.crash_on_rollout_status:
            raise SimulatedCrash("died after the target changed")
        if self.unreachable_reads > 0:
            self.unreachable_reads -= 1
            raise target_base.TargetError("API server unreachable", retriable=True)
        return super().rollout_status()


@dataclasses.dataclass
class World:
    server: mlflow_infra.MlflowServer
    client: MlflowClient
    name: str
    clock: helpers.ManualClock
    target_path: pathlib.Path

    def registry(self) -> model_registry.ModelRegistry:
        return model_registry.ModelRegistry(self.server.tracking_uri, self.name, clock=self.clock)

    def target(self, **kwargs: Any) -> CountingTarget:
        return CountingTarget(self.target_path, clock=self.clock, **kwargs)

    def handler(self, target: target_base.DeploymentTarget) -> rollback.RollbackHandler:
        """A fresh handler and registry client: what a restarted process would build."""
        return rollback.RollbackHandler(
            self.registry(),
            target,
            clock=self.clock,
            cooldown_s=COOLDOWN_S,
            circuit_breaker_window_s=BREAKER_WINDOW_S,
            rollout_timeout_s=ROLLOUT_TIMEOUT_S,
        )

    def request(self, key: str, *, model_version: str | None = None, **params: Any) -> base.ActionRequest:
        return base.ActionRequest(
            kind=base.ActionKind.ROLLBACK,
            model_name=self.name,
            idempotency_key=key,
            incident_id=f"incident-{key}",
            severity="critical",
            reason="error rate 14% on the new version",
            model_version=model_version,
            params=params,
        )

    def uri(self, version: int) -> str:
        return helpers.storage_source(self.name, version)


@pytest.fixture
def world(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, tmp_path: pathlib.Path
) -> World:
    clock = helpers.ManualClock(now=10_000.0)
    name = helpers.unique_model_name()
    history = {
        n: helpers.served_well(deployed_at=1000.0 * n, healthy_at=1000.0 * n + 500.0) for n in range(1, 5)
    }
    history[4] = {
        **history[4],
        model_registry.TAG_HEALTH: "rolled_back",
        model_registry.TAG_HEALTH_REASON: "latency p99 doubled",
        model_registry.TAG_ROLLED_BACK_AT: "4800.0",
    }
    history[5] = {model_registry.TAG_DEPLOYED_AT: "[5000.0]"}
    helpers.register_remote_versions(mlflow_client, name, 5, tags=history)
    mlflow_client.set_registered_model_alias(name, "champion", "5")
    target_path = tmp_path / "target.json"
    local.LocalTarget(target_path, initial_version="5", initial_model_uri=helpers.storage_source(name, 5))
    return World(mlflow_server, mlflow_client, name, clock, target_path)


def test_rolls_back_to_the_last_healthy_version_and_records_it(world: World) -> None:
    target = world.target()
    outcome = world.handler(target).handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message
    assert outcome.details["reason"] == "rolled_back"
    assert (outcome.details["from_version"], outcome.details["to_version"]) == ("5", "3")
    assert target.set_version_calls == [("3", world.uri(3))]
    state = local.read_state(world.target_path)
    assert (state.stable_version, state.stable_model_uri) == ("3", world.uri(3))

    reg = world.registry()
    assert reg.aliases() == {"champion": "3", "previous": "5"}
    bad = reg.version("5")
    assert bad.health is model_registry.Health.ROLLED_BACK
    assert bad.rolled_back_at == 10_000.0
    assert bad.health_reason == "error rate 14% on the new version"
    assert reg.version("3").deployed_at[-1] == 10_000.0
    (entry,) = reg.rollbacks()
    assert (entry.key, entry.result, entry.completed_at, entry.forced) == ("k1", "succeeded", 10_000.0, False)


def test_the_same_key_twice_never_rolls_back_twice(world: World) -> None:
    target = world.target()
    handler = world.handler(target)
    first = handler.handle(world.request("k1"), dry_run=False)
    world.clock.advance(5.0)
    again = handler.handle(world.request("k1"), dry_run=False)
    # A restarted process with an empty state directory asks the registry, not its memory.
    restarted = world.handler(world.target()).handle(world.request("k1"), dry_run=False)

    assert first.status is base.OutcomeStatus.SUCCEEDED
    for repeat in (again, restarted):
        assert repeat.status is base.OutcomeStatus.SUCCEEDED
        assert repeat.details["reason"] == "already_done"
        assert repeat.details["to_version"] == "3"
    assert len(target.set_version_calls) == 1
    assert len(world.registry().rollbacks()) == 1


def test_forced_rollback_goes_to_the_named_version_even_within_cooldown(world: World) -> None:
    target = world.target()
    handler = world.handler(target)
    assert handler.handle(world.request("auto-1"), dry_run=False).status is base.OutcomeStatus.SUCCEEDED

    world.clock.advance(10.0)  # well inside the cooldown
    forced = handler.handle(world.request("op-123", to_version="2"), dry_run=False)

    assert forced.status is base.OutcomeStatus.SUCCEEDED, forced.message
    assert (forced.details["from_version"], forced.details["to_version"], forced.details["forced"]) == (
        "3",
        "2",
        True,
    )
    assert local.read_state(world.target_path).stable_version == "2"
    assert world.registry().aliases()["champion"] == "2"


def test_forced_rollback_to_an_unknown_version_changes_nothing(world: World) -> None:
    target = world.target()
    outcome = world.handler(target).handle(world.request("op-1", to_version="42"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "invalid_request"
    assert "params.to_version '42'" in outcome.message
    assert target.set_version_calls == []
    assert world.registry().rollbacks() == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"to_version": ["3"]}, "params.to_version"), ({"pinned_version": True}, "params.pinned_version")],
)
def test_malformed_params_are_refused_with_the_field_named(
    world: World, params: dict[str, Any], field: str
) -> None:
    target = world.target()
    outcome = world.handler(target).handle(world.request("bad", **params), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "invalid_request"
    assert field in outcome.message
    assert target.set_version_calls == []


def test_a_request_for_another_model_is_refused(world: World) -> None:
    request = dataclasses.replace(world.request("k1"), model_name="someone-else")
    outcome = world.handler(world.target()).handle(request, dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert "someone-else" in outcome.message
    assert local.read_state(world.target_path).stable_version == "5"


def test_a_pinned_model_is_not_rolled_back(world: World) -> None:
    target = world.target()
    handler = world.handler(target)

    auto = handler.handle(world.request("k1", pinned_version="5"), dry_run=False)
    forced_elsewhere = handler.handle(
        world.request("op-1", pinned_version="5", to_version="3"), dry_run=False
    )

    for outcome in (auto, forced_elsewhere):
        assert outcome.status is base.OutcomeStatus.SKIPPED
        assert outcome.details["reason"] == "pinned"
        assert "pinned to version 5" in outcome.message
    assert target.set_version_calls == []
    assert world.registry().rollbacks() == []

    # Forcing the model onto its pinned version is what the pin asks for.
    onto_pin = handler.handle(world.request("op-2", pinned_version="2", to_version="2"), dry_run=False)
    assert onto_pin.status is base.OutcomeStatus.SUCCEEDED
    assert local.read_state(world.target_path).stable_version == "2"


def test_cooldown_allows_one_automatic_rollback_per_model(world: World, mlflow_client: MlflowClient) -> None:
    target = world.target()
    handler = world.handler(target)
    assert handler.handle(world.request("k1"), dry_run=False).status is base.OutcomeStatus.SUCCEEDED
    # A human ships version 6 right after; it is bad too, but the cooldown holds.
    mlflow_client.create_model_version(world.name, world.uri(6), await_creation_for=0)
    target.set_version("6", world.uri(6))

    world.clock.advance(60.0)
    held = handler.handle(world.request("k2", model_version="6"), dry_run=False)
    assert held.status is base.OutcomeStatus.SKIPPED
    assert held.details["reason"] == "cooldown"
    assert held.details["retry_after_s"] == pytest.approx(COOLDOWN_S - 60.0)
    assert local.read_state(world.target_path).stable_version == "6"

    world.clock.advance(COOLDOWN_S)
    later = handler.handle(world.request("k2", model_version="6"), dry_run=False)
    assert later.status is base.OutcomeStatus.SUCCEEDED, later.message
    assert (later.details["from_version"], later.details["to_version"]) == ("6", "3")


def test_circuit_opens_when_the_restored_version_is_unhealthy_too(world: World) -> None:
    target = world.target()
    handler = world.handler(target)
    assert handler.handle(world.request("k1"), dry_run=False).status is base.OutcomeStatus.SUCCEEDED

    world.clock.advance(60.0)  # inside the cooldown too: the breaker must still speak, and page
    tripped = handler.handle(world.request("k2", model_version="3"), dry_run=False)

    assert tripped.status is base.OutcomeStatus.FAILED
    assert tripped.details["reason"] == "circuit_open"
    assert tripped.details["recommendation"] == "page"
    assert tripped.details["restored_by"] == "k1"
    assert local.read_state(world.target_path).stable_version == "3"
    assert len(target.set_version_calls) == 1
    assert world.registry().version("3").health is model_registry.Health.UNHEALTHY

    # Past the window the agent may act again, and 3 is no longer a candidate: it goes to 2.
    world.clock.advance(BREAKER_WINDOW_S)
    after = handler.handle(world.request("k3", model_version="3"), dry_run=False)
    assert after.status is base.OutcomeStatus.SUCCEEDED, after.message
    assert after.details["to_version"] == "2"


def test_resume_after_a_crash_once_the_target_switched_confirms_without_switching_again(world: World) -> None:
    dying = world.target()
    dying.crash_on_rollout_status = True
    with pytest.raises(SimulatedCrash):
        world.handler(dying).handle(world.request("k1"), dry_run=False)
    assert dying.set_version_calls == [("3", world.uri(3))]
    assert world.registry().rollback("k1") is not None  # journaled before the target changed

    world.clock.advance(30.0)
    restarted_target = world.target()
    outcome = world.handler(restarted_target).handle(world.request("k1", resume=True), dry_run=False)

    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message
    assert restarted_target.set_version_calls == []
    reg = world.registry()
    assert reg.aliases() == {"champion": "3", "previous": "5"}
    # Bookkeeping uses the journaled start time, so a repeat cannot add a second deployment.
    assert reg.version("3").deployed_at[-1] == 10_000.0


def test_resume_after_a_crash_before_the_target_switched_completes_it(world: World) -> None:
    dying = world.target()
    dying.crash_before_set_version = True
    with pytest.raises(SimulatedCrash):
        world.handler(dying).handle(world.request("k1"), dry_run=False)
    assert local.read_state(world.target_path).stable_version == "5"

    restarted_target = world.target()
    outcome = world.handler(restarted_target).handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message
    assert restarted_target.set_version_calls == [("3", world.uri(3))]
    assert local.read_state(world.target_path).stable_version == "3"


def test_slow_rollout_returns_in_progress_and_a_later_call_confirms(world: World) -> None:
    target = world.target(require_ack=True, progress_deadline_s=10 * ROLLOUT_TIMEOUT_S)
    handler = world.handler(target)

    first = handler.handle(world.request("k1"), dry_run=False)
    assert first.status is base.OutcomeStatus.IN_PROGRESS
    generation = local.read_state(world.target_path).generation

    world.clock.advance(60.0)
    still = handler.handle(world.request("k1"), dry_run=False)
    assert still.status is base.OutcomeStatus.IN_PROGRESS
    other = handler.handle(world.request("k2"), dry_run=False)
    assert other.details["reason"] == "rollback_in_progress"
    assert local.read_state(world.target_path).generation == generation  # nothing re-applied
    assert world.registry().aliases() == {"champion": "5"}  # not confirmed, not recorded

    local.acknowledge(world.target_path)  # the serving side now runs version 3
    done = handler.handle(world.request("k1"), dry_run=False)
    assert done.status is base.OutcomeStatus.SUCCEEDED, done.message
    assert len(target.set_version_calls) == 1
    assert world.registry().aliases() == {"champion": "3", "previous": "5"}


def test_a_target_blip_after_the_switch_leaves_the_rollback_in_progress_not_failed(world: World) -> None:
    target = world.target()
    target.unreachable_reads = 1
    handler = world.handler(target)

    interrupted = handler.handle(world.request("k1"), dry_run=False)
    assert interrupted.status is base.OutcomeStatus.IN_PROGRESS  # so the executor calls again
    assert interrupted.details["reason"] == "target_unavailable"
    assert interrupted.details["retryable"] is True

    resumed = handler.handle(world.request("k1", resume=True), dry_run=False)
    assert resumed.status is base.OutcomeStatus.SUCCEEDED, resumed.message
    assert len(target.set_version_calls) == 1


def test_a_target_that_refuses_the_change_fails_for_good_and_frees_the_journal(world: World) -> None:
    target = world.target()
    target.refuse_writes = True
    outcome = world.handler(target).handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "target_unavailable"
    assert outcome.details["recommendation"] == "page"
    assert "forbidden" in outcome.message
    (entry,) = world.registry().rollbacks()
    assert (entry.key, entry.result) == ("k1", "failed")
    assert local.read_state(world.target_path).stable_version == "5"


def test_a_rollout_that_never_completes_fails_and_pages(world: World) -> None:
    target = world.target(require_ack=True, progress_deadline_s=10 * ROLLOUT_TIMEOUT_S)
    handler = world.handler(target)
    assert handler.handle(world.request("k1"), dry_run=False).status is base.OutcomeStatus.IN_PROGRESS

    world.clock.advance(ROLLOUT_TIMEOUT_S + 1.0)
    outcome = handler.handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "rollout_timeout"
    assert outcome.details["recommendation"] == "page"
    assert world.registry().rollback("k1") is not None
    assert world.registry().rollbacks()[0].result == "failed"


def test_a_failed_rollout_reported_by_the_target_fails_and_pages(world: World) -> None:
    target = world.target(require_ack=True, progress_deadline_s=60.0)
    handler = world.handler(target)
    assert handler.handle(world.request("k1"), dry_run=False).status is base.OutcomeStatus.IN_PROGRESS

    world.clock.advance(61.0)  # past the target's own progress deadline
    outcome = handler.handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "rollout_failed"
    assert "not acknowledged" in outcome.message


def test_someone_else_moving_the_target_mid_rollback_is_not_fought(world: World) -> None:
    dying = world.target()
    dying.crash_on_rollout_status = True
    with pytest.raises(SimulatedCrash):
        world.handler(dying).handle(world.request("k1"), dry_run=False)
    world.target().set_version("1", world.uri(1))  # an operator acts while the agent is down

    restarted_target = world.target()
    outcome = world.handler(restarted_target).handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "target_moved"
    assert restarted_target.set_version_calls == []
    assert local.read_state(world.target_path).stable_version == "1"


def test_dry_run_describes_the_rollback_and_changes_nothing(world: World) -> None:
    target = world.target()
    before_file = world.target_path.read_bytes()
    before_tags = world.client.get_model_version(world.name, "5").tags

    outcome = world.handler(target).handle(world.request("k1"), dry_run=True)

    assert outcome.status is base.OutcomeStatus.SKIPPED
    assert outcome.details["reason"] == "dry_run"
    assert (outcome.details["from_version"], outcome.details["to_version"]) == ("5", "3")
    assert outcome.details["model_uri"] == world.uri(3)
    assert "would roll model" in outcome.message
    assert world.target_path.read_bytes() == before_file
    assert target.set_version_calls == []
    reg = world.registry()
    assert reg.rollbacks() == []
    assert reg.aliases() == {"champion": "5"}
    assert world.client.get_model_version(world.name, "5").tags == before_tags

    # And the real run afterwards is not blocked by the dry run (no cooldown was started).
    assert (
        world.handler(target).handle(world.request("k1"), dry_run=False).status
        is base.OutcomeStatus.SUCCEEDED
    )


def test_no_known_healthy_version_fails_and_pages(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, tmp_path: pathlib.Path
) -> None:
    clock = helpers.ManualClock()
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 2)
    world = World(mlflow_server, mlflow_client, name, clock, tmp_path / "target.json")
    target = world.target(initial_version="2", initial_model_uri=world.uri(2))

    outcome = world.handler(target).handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "no_healthy_version"
    assert outcome.details["recommendation"] == "page"
    assert "to_version" in outcome.message  # tells the operator how to force one
    assert target.set_version_calls == []


def test_a_report_about_a_version_that_no_longer_serves_is_stale(world: World) -> None:
    target = world.target()
    outcome = world.handler(target).handle(world.request("k1", model_version="4"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.SKIPPED
    assert outcome.details["reason"] == "stale_request"
    assert target.set_version_calls == []


def test_an_unreachable_registry_fails_retryably_before_touching_the_target(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    closed = model_registry.ModelRegistry(
        f"http://127.0.0.1:{mlflow_infra.free_port()}", world.name, clock=world.clock
    )
    target = world.target()
    handler = rollback.RollbackHandler(closed, target, clock=world.clock)

    outcome = handler.handle(world.request("k1"), dry_run=False)

    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "registry_unavailable"
    assert outcome.details["retryable"] is True
    assert target.set_version_calls == []


def test_from_settings_requires_a_tracking_uri(world: World) -> None:
    with pytest.raises(ValueError, match=r"registry\.tracking_uri"):
        rollback.RollbackHandler.from_settings(
            model_registry.RegistrySettings(), model_name=world.name, target=world.target()
        )
    handler = rollback.RollbackHandler.from_settings(
        model_registry.RegistrySettings(
            tracking_uri=world.server.tracking_uri, min_healthy_windows=1, cooldown_s=0
        ),
        model_name=world.name,
        target=world.target(),
        clock=world.clock,
    )
    assert handler.handle(world.request("k1"), dry_run=False).status is base.OutcomeStatus.SUCCEEDED

"""LocalTarget (the demo's JSON file), DryRunTarget and build_target: no server needed."""

from __future__ import annotations

import json
import pathlib

import pytest

from actions import targets
from actions.targets import base, dryrun, local
from tests.support.k8s import helpers


def make_target(
    path: pathlib.Path,
    clock: helpers.ManualClock,
    *,
    require_ack: bool = False,
    progress_deadline_s: float = 1200,
) -> local.LocalTarget:
    return local.LocalTarget(
        path,
        initial_version="1",
        initial_model_uri="file:///m/1",
        require_ack=require_ack,
        progress_deadline_s=progress_deadline_s,
        clock=clock,
    )


def test_versions_and_canary_round_trip_through_the_file(
    tmp_path: pathlib.Path, clock: helpers.ManualClock
) -> None:
    path = tmp_path / "serving.json"
    target = make_target(path, clock)
    assert target.current_version() == "1"

    target.set_traffic(base.TrafficSplit("1", "2", 20), "file:///m/2")
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert (on_disk["canary_version"], on_disk["canary_model_uri"], on_disk["canary_percent"]) == (
        "2",
        "file:///m/2",
        20,
    )
    assert target.traffic() == base.TrafficSplit("1", "2", 20)

    target.set_version("2", "file:///m/2")  # promote
    state = local.read_state(path)
    assert (state.stable_version, state.stable_model_uri, state.canary_version, state.canary_percent) == (
        "2",
        "file:///m/2",
        None,
        0,
    )
    # A second target on the same file (the agent after a restart) sees the same state.
    assert local.LocalTarget(path, clock=clock).current_version() == "2"


def test_repeating_a_write_does_not_start_a_new_rollout(
    tmp_path: pathlib.Path, clock: helpers.ManualClock
) -> None:
    target = make_target(tmp_path / "serving.json", clock)
    target.set_version("2", "file:///m/2")
    generation = target.state().generation
    clock.advance(30)
    target.set_version("2", "file:///m/2")
    assert target.state().generation == generation


def test_rollout_waits_for_the_server_when_acknowledgement_is_required(
    tmp_path: pathlib.Path, clock: helpers.ManualClock
) -> None:
    path = tmp_path / "serving.json"
    target = make_target(path, clock, require_ack=True, progress_deadline_s=60)
    assert target.rollout_status().phase is base.RolloutPhase.COMPLETE

    target.set_version("2", "file:///m/2")
    assert target.rollout_status().phase is base.RolloutPhase.PROGRESSING
    local.acknowledge(path)
    assert target.rollout_status().phase is base.RolloutPhase.COMPLETE

    target.set_version("3", "file:///m/3")
    clock.advance(61)
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.FAILED
    assert "not acknowledged after 61 s" in status.message


def test_bad_files_and_arguments_are_clear_errors(tmp_path: pathlib.Path, clock: helpers.ManualClock) -> None:
    missing = local.LocalTarget(tmp_path / "absent.json", clock=clock)
    with pytest.raises(base.TargetError, match="does not exist: no version deployed yet"):
        missing.current_version()

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(base.TargetError, match="is not valid JSON"):
        local.LocalTarget(broken, clock=clock).current_version()

    typo = tmp_path / "typo.json"
    typo.write_text(
        json.dumps({"stable_version": "1", "stable_model_uri": "", "canary_pct": 5}), encoding="utf-8"
    )
    with pytest.raises(base.TargetError, match=r"unknown keys \['canary_pct'\]"):
        local.LocalTarget(typo, clock=clock).current_version()

    target = make_target(tmp_path / "serving.json", clock)
    with pytest.raises(base.TargetError, match="names stable version 7 but 1 is serving"):
        target.set_traffic(base.TrafficSplit("7", "8", 10), "file:///m/8")
    with pytest.raises(ValueError, match="canary_percent must be between 0 and 100, got 120"):
        base.TrafficSplit("1", "2", 120)
    with pytest.raises(ValueError, match="canary_version is empty"):
        base.TrafficSplit("1", None, 10)


def test_dry_run_records_intentions_and_leaves_the_file_alone(
    tmp_path: pathlib.Path, clock: helpers.ManualClock
) -> None:
    path = tmp_path / "serving.json"
    inner = make_target(path, clock)
    before = path.read_bytes()
    target = dryrun.DryRunTarget(inner, clock=clock)

    target.set_traffic(base.TrafficSplit("1", "2", 10), "file:///m/2")
    clock.advance(5)
    target.set_version("2", "file:///m/2")

    assert path.read_bytes() == before
    assert target.current_version() == "1"
    assert [(i.operation, i.at) for i in target.intentions] == [
        ("set_traffic", clock.now - 5),
        ("set_version", clock.now),
    ]
    assert target.intentions[1].version == "2"


def test_build_target_from_settings(tmp_path: pathlib.Path, clock: helpers.ManualClock) -> None:
    config = targets.TargetSettings.model_validate(
        {
            "kind": "local",
            "dry_run": True,
            "local": {"path": str(tmp_path / "s.json"), "initial_version": "4"},
        }
    )
    target = targets.build_target(config, clock=clock)
    assert isinstance(target, dryrun.DryRunTarget)
    assert isinstance(target.inner, local.LocalTarget)
    assert target.current_version() == "4"
    with pytest.raises(ValueError, match="kind"):
        targets.TargetSettings.model_validate({"kind": "k8s"})
    with pytest.raises(ValueError, match="deploymnet"):
        targets.TargetSettings.model_validate({"kubernetes": {"deploymnet": "x"}})

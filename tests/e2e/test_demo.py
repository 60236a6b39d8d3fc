"""The demo's story, asserted: every injected event detected, the right action, nothing else.

It runs the real thing (Tansu broker, MLflow on sqlite, torch models, a retrain logged and served
as an MLflow pyfunc, the agent) for about two minutes, so it is marked slow; it is also the
end-to-end test of `drift-agent run`'s wiring.
"""

from __future__ import annotations

import pathlib

import pytest

from actions import base as actions_base
from agent.respond import executor
from demo import story, ui

Kind = actions_base.ActionKind
Status = actions_base.OutcomeStatus


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> story.StoryResult:
    state = tmp_path_factory.mktemp("demo")
    return story.run_story(story.SCENARIOS, state=state / "state", say=print)


def event(result: story.StoryResult, name: str) -> story.Event:
    return next(e for e in result.events if e.name == name)


def during(result: story.StoryResult, name: str) -> list[executor.Executed]:
    """What the agent did from this scenario's injection until the next scenario's."""
    start = event(result, name).injected_at
    later = [e.injected_at for e in result.events if e.injected_at > start]
    end = min(later, default=float("inf"))
    return [done for at, done in result.actions if start <= at < end]


def distinct(actions: list[executor.Executed], kind: Kind, status: Status) -> list[executor.Executed]:
    """One entry per idempotency key: a key reported twice (a duplicate) is one action."""
    by_key = {
        done.request.idempotency_key: done
        for done in actions
        if done.request.kind == kind and done.outcome.status == status
    }
    return list(by_key.values())


pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_every_scenario_ran_and_passed(result: story.StoryResult) -> None:
    assert [e.name for e in result.events] == list(story.SCENARIOS)
    failed = {e.name: e.notes for e in result.events if not e.passed}
    # The notes in full: pytest would cut them short, and they are what says why.
    assert failed == {}, "\n".join(f"{name}: {note}" for name, notes in failed.items() for note in notes)


def test_timeline_table_shows_every_scenario(result: story.StoryResult) -> None:
    with ui.console.capture() as captured:
        ui.print_timeline(result, elapsed_s=1.0)
    text = captured.get()
    for name in story.SCENARIOS:
        assert name in text
    assert text.count(" ok ") >= len(story.SCENARIOS)


def test_data_drift_detected_after_injection_and_alerted_as_moderate(result: story.StoryResult) -> None:
    drift = event(result, "data_drift")
    assert drift.detected_index is not None and drift.detected_index >= drift.injected_index
    assert drift.acted_at is not None and drift.detected_at is not None
    assert drift.acted_at >= drift.detected_at
    assert "(moderate)" in drift.action_detail
    slack = [
        n for n in result.notifications if n.service == "slack" and "data_drift" in n.body.get("text", "")
    ]
    assert slack, "the Slack stand-in received no data-drift message"
    assert isinstance(slack[0].body.get("blocks"), list)


def test_an_encoder_upgrade_is_caught_on_the_embedding_and_alerted(result: story.StoryResult) -> None:
    upgrade = event(result, "embedding_drift")
    # Detected on the request embedding itself (the story waits for a drifted result on it), in a
    # window of traffic served after the upgrade.
    assert upgrade.detected_index is not None and upgrade.detected_index >= upgrade.injected_index
    assert upgrade.detected_at is not None and upgrade.acted_at is not None
    assert upgrade.detected_at <= upgrade.acted_at
    assert upgrade.recovered_at is not None
    # Data drift on an input is told, not remediated: no rollback, retrain, canary or page.
    acted = during(result, "embedding_drift")
    assert not {done.request.kind for done in acted} & {Kind.ROLLBACK, Kind.RETRAIN, Kind.CANARY, Kind.PAGE}


def test_bad_release_rolled_back_once_to_the_last_healthy_version(result: story.StoryResult) -> None:
    release = event(result, "bad_release")
    assert release.action_detail == "rollback 4 -> 3"
    rollbacks = distinct([done for _, done in result.actions], Kind.ROLLBACK, Status.SUCCEEDED)
    # 2 was rolled back long ago: the target is 3, the last version that served healthily.
    assert [r.outcome.details.get("to_version") for r in rollbacks] == ["3"]


def test_concept_drift_retrained_then_promoted_through_every_canary_step(result: story.StoryResult) -> None:
    drift = event(result, "concept_drift")
    assert drift.detected_index is not None and drift.detected_index >= drift.injected_index
    assert drift.detected_at is not None and drift.acted_at is not None and drift.recovered_at is not None
    assert drift.detected_at <= drift.acted_at <= drift.recovered_at
    acted = during(result, "concept_drift")
    retrains = distinct(acted, Kind.RETRAIN, Status.SUCCEEDED)
    assert len(retrains) == 1
    gates = retrains[0].outcome.details["gates"]
    assert gates and all(gate["passed"] for gate in gates)
    candidate = str(retrains[0].outcome.details["candidate_version"])
    # The agent, not the story, turned the retrain into a canary (the retrain's key + "/canary").
    canaries = distinct(acted, Kind.CANARY, Status.SUCCEEDED)
    assert [c.request.params["candidate_version"] for c in canaries] == [candidate]
    assert canaries[0].request.idempotency_key == retrains[0].request.idempotency_key + "/canary"
    assert canaries[0].outcome.details["phase"] == "promoted"
    assert drift.steps == list(story.CANARY_STEPS)
    # A gradual drift is retrained, never rolled back or paged.
    assert {done.request.kind for done in acted} <= {
        Kind.ALERT,
        Kind.RESOLVE,
        Kind.LOG,
        Kind.RETRAIN,
        Kind.CANARY,
    }


def test_slow_canary_rolled_back_on_latency_at_its_first_step(result: story.StoryResult) -> None:
    slow = event(result, "canary_latency")
    assert slow.detected_at is not None and slow.acted_at is not None
    assert slow.detected_at <= slow.acted_at
    acted = during(result, "canary_latency")
    ended = distinct(acted, Kind.CANARY, Status.FAILED)
    assert len(ended) == 1
    details = ended[0].outcome.details
    assert details["phase"] == "rolled_back"
    assert details["failed_checks"] == 2  # the demo's max_failed_checks
    assert "latency_p95_vs_stable" in details["why"]
    assert slow.steps == [story.CANARY_STEPS[0]]  # never advanced past 10%
    # The canary handled it alone: no rollback handler, retrain or page joined in.
    assert not {done.request.kind for done in acted} & {Kind.ROLLBACK, Kind.RETRAIN, Kind.PAGE}


def test_override_mutes_alerts_and_freezes_actions(result: story.StoryResult) -> None:
    override = event(result, "override")
    assert override.detected_at is not None  # detection goes on while muted
    assert override.action_detail.startswith("alert skipped")
    assert override.lifted_at is not None
    # Until the file is removed; after it, an earlier incident may rightly send its RESOLVE.
    acted = [
        (done.request.kind.value, done.request.incident_id)
        for at, done in result.actions
        if override.injected_at <= at < override.lifted_at
        and done.outcome.status == actions_base.OutcomeStatus.SUCCEEDED
        and done.request.kind != actions_base.ActionKind.LOG
    ]
    assert acted == []
    skipped = [
        done.outcome.details.get("reason")
        for done in during(result, "override")
        if done.outcome.status == actions_base.OutcomeStatus.SKIPPED
    ]
    assert skipped, "nothing was skipped: the override was not applied"


def test_drift_report_written(result: story.StoryResult) -> None:
    assert result.report_path is not None
    html = pathlib.Path(result.report_path).read_text(encoding="utf-8")
    assert "x3" in html and "x5" in html


def test_a_broken_pipeline_pages_the_data_owner_and_nothing_is_remediated(result: story.StoryResult) -> None:
    broken = event(result, "pipeline_break")
    assert broken.detected_at is not None and broken.acted_at is not None
    assert broken.action_detail.startswith("page to the data owner (fraud-scorer/quality/x")
    acted = during(result, "pipeline_break")
    pages = distinct(acted, Kind.PAGE, Status.SUCCEEDED)
    assert {p.request.incident_id for p in pages} <= {
        f"fraud-scorer/quality/{x}" for x in story.BROKEN_INPUTS
    }
    owner = [n for n in result.notifications if n.service == "data-owner" and n.at >= broken.injected_at]
    assert owner, "the data owner's channel received nothing"
    assert not {done.request.kind for done in acted} & {Kind.ROLLBACK, Kind.RETRAIN, Kind.CANARY}

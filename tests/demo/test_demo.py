"""The demo's story, asserted: every injected event detected, the right action, nothing else.

It runs the real thing (Tansu broker, MLflow on sqlite, torch models, the agent) for about a
minute, so it is marked slow; it is also the end-to-end test of `drift-agent run`'s wiring.
"""

from __future__ import annotations

import pathlib

import pytest

from actions import base as actions_base
from agent.demo import story


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> story.StoryResult:
    state = tmp_path_factory.mktemp("demo")
    return story.run_story(story.SCENARIOS, state=state / "state", say=print)


def event(result: story.StoryResult, name: str) -> story.Event:
    return next(e for e in result.events if e.name == name)


pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_every_scenario_ran_and_passed(result: story.StoryResult) -> None:
    assert [e.name for e in result.events] == list(story.SCENARIOS)
    failed = {e.name: e.notes for e in result.events if not e.passed}
    assert failed == {}


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


def test_bad_release_rolled_back_once_to_the_last_healthy_version(result: story.StoryResult) -> None:
    release = event(result, "bad_release")
    assert release.action_detail == "rollback 4 -> 3"
    rollbacks = [
        done
        for _, done in result.actions
        if done.request.kind == actions_base.ActionKind.ROLLBACK
        and done.outcome.status == actions_base.OutcomeStatus.SUCCEEDED
    ]
    # 2 was rolled back long ago: the target is 3, the last version that served healthily.
    assert [r.outcome.details.get("to_version") for r in rollbacks] == ["3"]


def test_override_mutes_alerts_and_freezes_actions(result: story.StoryResult) -> None:
    override = event(result, "override")
    assert override.detected_at is not None  # detection goes on while muted
    assert override.action_detail.startswith("alert skipped")
    acted = [
        done.request.kind.value
        for at, done in result.actions
        if at >= override.injected_at
        and done.outcome.status == actions_base.OutcomeStatus.SUCCEEDED
        and done.request.kind != actions_base.ActionKind.LOG
    ]
    assert acted == []
    skipped = [
        done.outcome.details.get("reason")
        for at, done in result.actions
        if at >= override.injected_at and done.outcome.status == actions_base.OutcomeStatus.SKIPPED
    ]
    assert skipped, "nothing was skipped: the override was not applied"


def test_drift_report_written(result: story.StoryResult) -> None:
    assert result.report_path is not None
    html = pathlib.Path(result.report_path).read_text(encoding="utf-8")
    assert "x3" in html and "x5" in html

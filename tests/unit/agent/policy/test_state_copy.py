"""``PolicyState.copy``: what ``decide`` starts each window from, instead of a JSON round trip."""

from __future__ import annotations

import dataclasses

from actions import vocabulary
from agent.policy import incidents
from agent.policy.state import PolicyState


def _every_field_set() -> PolicyState:
    incident = incidents.IncidentState(
        incident_id="m/data_drift/all@model_version=2",
        model="m",
        family="data_drift",
        group="all",
        status="open",
        epoch=3,
        severity=vocabulary.Severity.SEVERE,
        notified_severity=vocabulary.Severity.MODERATE,
        drift_streak=4,
        clean_streak=1,
        episode_windows=6,
        severe_at_window=2,
        opened_at=10.0,
        updated_at=20.0,
        model_version="2",
        rule_id="drift",
        flapping=True,
        open_history=[1.0, 2.0],
        actions_taken=["alert"],
        held=["retrain"],
        unexplained_streak=2,
        split_version="2",
        model_incident_id="m/data_drift/all",
    )
    return PolicyState(
        incidents={incident.incident_id: incident},
        versions_first_seen={"1": 1.0, "2": 5.0},
        last_remediation={"m/rollback": 7.0},
        forced_done=["f1"],
        windows=9,
        remediations={"m": [7.0]},
        budget_paged={"m": 7.0},
        recent_versions=["1", "2"],
    )


def test_the_fixture_sets_every_field_away_from_its_default() -> None:
    # A field added later and left out of copy() would otherwise pass unnoticed.
    state = _every_field_set()
    for field in dataclasses.fields(PolicyState):
        assert getattr(state, field.name) != getattr(PolicyState(), field.name), field.name
    incident = next(iter(state.incidents.values()))
    blank = incidents.IncidentState(incident_id="x", model="m", family="f", group="g")
    for field in dataclasses.fields(incidents.IncidentState):
        if field.name not in ("incident_id", "model", "family", "group"):
            assert getattr(incident, field.name) != getattr(blank, field.name), field.name


def test_copy_equals_the_json_round_trip() -> None:
    state = _every_field_set()
    assert state.copy().to_json() == PolicyState.from_json(state.to_json()).to_json() == state.to_json()


def test_a_copy_shares_nothing_mutable_with_its_original() -> None:
    state = _every_field_set()
    before = state.to_json()
    copied = state.copy()
    incident = next(iter(copied.incidents.values()))
    incident.open_history.append(3.0)
    incident.actions_taken.append("page")
    incident.held.clear()
    incident.drift_streak += 1
    copied.incidents["new"] = dataclasses.replace(incident, incident_id="new")
    copied.versions_first_seen["3"] = 9.0
    copied.last_remediation.clear()
    copied.forced_done.append("f2")
    copied.remediations["m"].append(8.0)
    copied.budget_paged.clear()
    copied.recent_versions.append("3")
    assert state.to_json() == before

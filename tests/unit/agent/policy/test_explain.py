"""Why a window did or did not page, in one sentence per incident it moved."""

from __future__ import annotations

from agent.policy import explain
from tests.unit.agent import factories as f


def test_each_step_of_an_incident_says_what_it_waits_for_and_why() -> None:
    run = f.Run()
    said = [explain.explain(run.window(f.data_window(3), 60.0 * i)) for i in range(3)]
    assert said[0] == [
        "model/data_drift/all (rule data-drift): 3 of 10 drifted, window graded moderate "
        "(drifted share 0.30, effect 0.100); 1 drifted window in a row of the 3 "
        "this evidence needs to open"
    ]
    assert said[1][0].endswith("2 drifted windows in a row of the 3 this evidence needs to open")
    assert said[2] == [
        "model/data_drift/all (rule data-drift): opened at moderate after 3 drifted windows in a row, "
        "window graded moderate (drifted share 0.30, effect 0.100)"
    ]
    clean = explain.explain(run.window(f.data_window(0), 400.0))
    assert clean == [
        "model/data_drift/all (rule data-drift): clean window while open; it resolves after the rule's "
        "clear_after clean windows"
    ]


def test_held_back_actions_say_why() -> None:
    run = f.Run()
    run.windows([f.data_window(3)] * 3, 0.0)  # opened at moderate: alerted
    run.overrides = f.override_state("acknowledge:\n  - {incident: model/data_drift/all}\n")
    said = explain.explain(run.window(f.data_window(6), 200.0))  # escalates to severe
    assert said[0].startswith("model/data_drift/all (rule data-drift): escalated to severe")
    assert "alert for model/data_drift/all held back: acknowledged" in said
    assert "acknowledged incidents notify nobody except on escalation to critical" in said

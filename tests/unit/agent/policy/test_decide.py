"""policy.decide over sequences of windows: hysteresis, grading, plans, incidents, keys."""

from __future__ import annotations

import dataclasses
import json

from actions import base as actions_base
from actions import vocabulary
from agent import policy
from detectors import base
from tests.unit.agent import factories as f

ALERT = actions_base.ActionKind.ALERT
PAGE = actions_base.ActionKind.PAGE
LOG = actions_base.ActionKind.LOG
RESOLVE = actions_base.ActionKind.RESOLVE
ROLLBACK = actions_base.ActionKind.ROLLBACK
RETRAIN = actions_base.ActionKind.RETRAIN
INCIDENT = "model/data_drift/all"


def test_raises_only_after_raise_after_consecutive_drifted_windows() -> None:
    run = f.Run()
    first, second, third = (run.window(f.data_window(1), t) for t in (0.0, 60.0, 120.0))
    assert f.events(first) == ["pending"] and f.events(second) == ["pending"]
    assert first.actions == () and second.actions == ()
    assert first.severity is vocabulary.Severity.NONE
    assert f.events(third) == ["opened"]
    assert f.kinds(third) == [LOG]
    assert third.actions[0].idempotency_key == f"{INCIDENT}#1/log/minor"
    assert third.severity is vocabulary.Severity.MINOR
    assert third.rule_id == "data-drift"


def test_clean_window_while_pending_restarts_the_count() -> None:
    run = f.Run()
    run.windows(
        [f.data_window(1), f.data_window(1), f.data_window(0), f.data_window(1), f.data_window(1)], 0.0
    )
    assert all(d.actions == () for d in run.decisions)
    assert run.state.incidents[INCIDENT].status == "pending"
    assert f.events(run.window(f.data_window(1), 400.0)) == ["opened"]


def test_clears_after_clear_after_clean_windows_and_resolves_what_was_notified() -> None:
    run = f.Run()
    run.windows([f.data_window(3)] * 3, 0.0)  # share 0.3 -> moderate -> alert
    assert f.kinds(run.decisions[-1]) == [ALERT]
    clean = [run.window(f.data_window(0), 1000.0 + i) for i in range(3)]
    assert [f.events(d) for d in clean] == [["updated"], ["updated"], ["resolved"]]
    assert clean[0].actions == () and clean[1].actions == ()
    assert f.kinds(clean[2]) == [RESOLVE]
    assert clean[2].actions[0].idempotency_key == f"{INCIDENT}#1/resolve"
    assert run.state.incidents[INCIDENT].status == "closed"
    assert clean[2].severity is vocabulary.Severity.NONE


def test_resolve_of_an_incident_nobody_was_told_about_is_only_logged() -> None:
    run = f.Run()
    run.windows([f.data_window(1)] * 3 + [f.data_window(0)] * 3, 0.0)
    assert f.kinds(run.decisions[-1]) == [LOG]
    assert run.decisions[-1].actions[0].idempotency_key == f"{INCIDENT}#1/resolve"


def test_an_incident_opened_while_muted_closes_without_a_resolve() -> None:
    run = f.Run()
    run.overrides = f.override_state("mute:\n  - {model: '*', until: '2030-01-01T00:00:00Z'}\n")
    run.windows([f.data_window(3)] * 3, 0.0)
    assert f.kinds(run.decisions[-1]) == [ALERT]  # planned; the executor skips it as muted
    run.overrides = f.NO_OVERRIDES  # the mute ends while the incident is open
    clean = [run.window(f.data_window(0), 1000.0 + i) for i in range(3)]
    assert f.events(clean[-1]) == ["resolved"] and f.kinds(clean[-1]) == [LOG]


def test_too_few_samples_count_neither_as_drift_nor_as_clean() -> None:
    run = f.Run()
    run.windows([f.data_window(3), f.data_window(3)], 0.0)
    small = [run.window(f.data_window(0, n=50), 200.0 + i) for i in range(5)]
    assert all(f.events(d) == ["insufficient"] for d in small)
    assert small[0].incidents[0].insufficient == 10
    assert run.state.incidents[INCIDENT].drift_streak == 2
    assert f.events(run.window(f.data_window(3), 500.0)) == ["opened"]


def test_required_effect_size_keeps_trivial_significant_shifts_quiet() -> None:
    rule = policy.Rule(id="strict", family="data_drift", raise_after=1, require_effect_size=0.1)
    run = f.Run(config=policy.PolicyConfig(rules=(rule,)))
    tiny = run.window(f.data_window(5, effect=0.02), 0.0)
    assert tiny.actions == () and f.events(tiny) == ["none"]
    assert tiny.incidents[0].below_effect_size == 5 and tiny.incidents[0].drifted == 0
    missing = run.window(f.data_window(5, effect=None), 60.0)
    assert missing.incidents[0].below_effect_size == 5
    real = run.window(f.data_window(5, effect=0.2), 120.0)
    assert f.events(real) == ["opened"]


def test_severity_grows_with_the_share_of_drifted_features() -> None:
    grades = {}
    for drifted in (1, 2, 5):
        run = f.Run()
        run.windows([f.data_window(drifted)] * 3, 0.0)
        grades[drifted] = run.decisions[-1].severity
    assert grades == {
        1: vocabulary.Severity.MINOR,
        2: vocabulary.Severity.MODERATE,
        5: vocabulary.Severity.SEVERE,
    }


def test_score_ratio_grades_higher_is_drift_scores() -> None:
    rule = policy.Rule(
        id="w", family="data_drift", raise_after=1, score_ratio=policy.Bands(moderate=2, severe=4)
    )
    run = f.Run(config=policy.PolicyConfig(rules=(rule,)))
    assert run.window([f.score_result("a", score=0.15)], 0.0).severity is vocabulary.Severity.MINOR
    assert run.window([f.score_result("a", score=0.25)], 60.0).severity is vocabulary.Severity.MODERATE
    assert run.window([f.score_result("a", score=0.45)], 120.0).severity is vocabulary.Severity.SEVERE


def test_threshold_override_recomputes_the_verdict_from_the_score() -> None:
    results = [*f.data_window(0), f.pvalue_result("z", drifted=True, detector="psi_like", p_value=0.03)]
    plain = f.Run(
        config=policy.PolicyConfig(rules=(policy.Rule(id="d", family="data_drift", raise_after=1),))
    )
    assert f.events(plain.window(results, 0.0)) == ["opened"]
    loose = f.override_state("thresholds:\n  - {detector: psi_like, feature: z, threshold: 0.01}\n")
    overridden = f.Run(config=plain.config, overrides=loose)
    decision = overridden.window(results, 0.0)
    assert decision.actions == () and decision.incidents[0].drifted == 0


def test_per_feature_rule_opens_its_own_incident_first() -> None:
    rules = (
        policy.Rule(id="income", family="data_drift", feature="f0", raise_after=1, incident_per_feature=True),
        policy.Rule(id="rest", family="data_drift"),
    )
    run = f.Run(config=policy.PolicyConfig(rules=rules))
    decision = run.window(f.data_window(2), 0.0)
    by_id = {r.incident_id: r for r in decision.incidents}
    assert by_id["model/data_drift/f0"].event == "opened"
    assert by_id["model/data_drift/f0"].rule_id == "income"
    assert by_id["model/data_drift/all"].event == "pending"
    assert by_id["model/data_drift/all"].units == 9
    assert decision.rule_id == "income"
    assert [a.incident_id for a in decision.actions] == ["model/data_drift/f0"]


def test_each_segment_is_its_own_incident() -> None:
    run = f.Run()
    results = f.data_window(3, segment={"region": "eu"}) + f.data_window(0, segment={"region": "us"})
    decision = run.window(results, 0.0)
    assert {r.incident_id for r in decision.incidents} == {
        "model/data_drift/all@region=eu",
        "model/data_drift/all@region=us",
    }


def test_repeats_update_silently_and_only_escalation_notifies_again() -> None:
    run = f.Run()
    run.windows([f.data_window(3)] * 3, 0.0)
    assert f.kinds(run.decisions[-1]) == [ALERT]
    repeat = run.window(f.data_window(3), 300.0)
    lower = run.window(f.data_window(1), 360.0)
    assert repeat.actions == () and f.events(repeat) == ["updated"]
    assert lower.actions == () and lower.severity is vocabulary.Severity.MINOR
    severe = run.window(f.data_window(6), 420.0)
    assert f.events(severe) == ["escalated"]
    assert f.kinds(severe) == [ALERT, RETRAIN]
    assert severe.actions[0].idempotency_key == f"{INCIDENT}#1/alert/severe"
    assert severe.actions[0].params["event"] == "update"
    assert run.window(f.data_window(3), 480.0).actions == ()
    assert run.window(f.data_window(6), 540.0).actions == ()


def _new_version_run(config: policy.PolicyConfig | None = None) -> f.Run:
    run = f.Run(config=config or policy.PolicyConfig())
    run.windows([[f.perf_result(0.0, version="1")]] * 3, 0.0)
    return run


def test_sudden_severe_drop_on_a_new_version_rolls_back() -> None:
    run = _new_version_run()
    run.windows([[f.perf_result(0.08, version="2")]] * 2, 1000.0)
    opened = run.decisions[-1]
    assert f.events(opened) == ["opened"] and opened.severity is vocabulary.Severity.SEVERE
    assert f.kinds(opened) == [ALERT, ROLLBACK]
    rollback = opened.actions[1]
    # The version it rolls back from is in the key (a fresh agent must not collide with an old one);
    # versions 1 and 2 both served within the last windows, so the incident is version 2's own.
    assert rollback.idempotency_key == "model/performance/all@model_version=2#1/rollback/v2"
    assert rollback.params["from_version"] == "2" and rollback.model_version == "2"


def test_escalation_does_not_repeat_a_remediation_of_the_same_epoch() -> None:
    run = _new_version_run()
    run.windows([[f.perf_result(0.08, version="2")]] * 2, 1000.0)
    assert f.kinds(run.decisions[-1]) == [ALERT, ROLLBACK]
    critical = run.window([f.perf_result(0.3, version="2")], 1200.0)
    assert f.events(critical) == ["escalated"] and f.kinds(critical) == [PAGE]
    assert [(s.kind, s.reason) for s in critical.suppressed] == [("rollback", "already issued in this epoch")]


def test_severe_drop_without_a_new_version_retrains() -> None:
    run = f.Run()
    run.windows([[f.perf_result(0.08, version="1")]] * 2, 0.0)
    assert f.kinds(run.decisions[-1]) == [ALERT, RETRAIN]


def test_the_new_version_condition_is_configurable() -> None:
    config = policy.PolicyConfig(remediation=policy.RemediationConfig(require_new_version=False))
    run = f.Run(config=config)
    run.windows([[f.perf_result(0.08, version="1")]] * 2, 0.0)
    assert f.kinds(run.decisions[-1]) == [ALERT, ROLLBACK]


def test_a_version_stops_being_new_after_new_version_max_age_s() -> None:
    run = _new_version_run()
    run.window([f.perf_result(0.0, version="2")], 1000.0)
    run.windows([[f.perf_result(0.08, version="2")]] * 2, 1000.0 + 86_400.0)
    assert f.kinds(run.decisions[-1]) == [ALERT, RETRAIN]


def test_gradual_rise_to_severe_retrains_even_for_sudden_families() -> None:
    run = _new_version_run()
    drops = [0.03, 0.03, 0.03, 0.03, 0.08]  # moderate for four windows, severe on the fifth
    run.windows([[f.perf_result(d, version="2")] for d in drops], 1000.0)
    assert f.kinds(run.decisions[-4]) == [ALERT]  # a material drop opens after material_raise_after
    assert f.events(run.decisions[-1]) == ["escalated"]
    assert f.kinds(run.decisions[-1]) == [ALERT, RETRAIN]


def test_gradual_data_drift_retrains_and_on_gradual_none_only_alerts() -> None:
    run = f.Run()
    run.windows([f.data_window(6)] * 3, 0.0)
    assert f.kinds(run.decisions[-1]) == [ALERT, RETRAIN]
    quiet = f.Run(config=policy.PolicyConfig(remediation=policy.RemediationConfig(on_gradual="none")))
    quiet.windows([f.data_window(6)] * 3, 0.0)
    assert f.kinds(quiet.decisions[-1]) == [ALERT]


def test_critical_pages_and_rolls_back_on_the_first_window() -> None:
    run = f.Run()
    decision = run.window([f.perf_result(0.3)], 0.0)
    assert f.events(decision) == ["opened"] and decision.severity is vocabulary.Severity.CRITICAL
    assert f.kinds(decision) == [PAGE, ROLLBACK]
    assert [a.idempotency_key for a in decision.actions] == [
        "model/performance/all#1/page/critical",
        "model/performance/all#1/rollback/v1",
    ]


def test_cooldown_suppresses_a_second_remediation_of_the_same_kind() -> None:
    rule = policy.Rule(
        id="w",
        family="data_drift",
        raise_after=1,
        incident_per_feature=True,
        cooldown_s=3600,
        score_ratio=policy.Bands(severe=4),
    )
    run = f.Run(config=policy.PolicyConfig(rules=(rule,)))
    first = run.window([f.score_result("a", score=0.5)], 0.0)
    second = run.window([f.score_result("b", score=0.5)], 100.0)
    third = run.window([f.score_result("c", score=0.5)], 3700.0)
    assert f.kinds(first) == [ALERT, RETRAIN]
    assert f.kinds(second) == [ALERT]
    assert second.suppressed[0].kind == "retrain" and second.suppressed[0].reason.startswith("cooldown")
    assert f.kinds(third) == [ALERT, RETRAIN]


def test_frozen_remediation_does_not_start_the_cooldown() -> None:
    rule = policy.Rule(
        id="w",
        family="data_drift",
        raise_after=1,
        incident_per_feature=True,
        cooldown_s=3600,
        score_ratio=policy.Bands(severe=4),
    )
    run = f.Run(config=policy.PolicyConfig(rules=(rule,)))
    run.overrides = f.override_state("freeze:\n  - {model: '*', until: '2030-01-01T00:00:00Z'}\n")
    frozen = run.window([f.score_result("a", score=0.5)], 0.0)
    assert f.kinds(frozen) == [ALERT, RETRAIN]  # planned; the executor will skip it as frozen
    assert "model/retrain" not in run.state.last_remediation
    run.overrides = f.NO_OVERRIDES
    thawed = run.window([f.score_result("b", score=0.5)], 100.0)
    assert f.kinds(thawed) == [ALERT, RETRAIN] and thawed.suppressed == ()


def test_flapping_incident_is_held_open_and_notified_once() -> None:
    rule = policy.Rule(id="flappy", family="data_drift", raise_after=1, clear_after=1)
    run = f.Run(config=policy.PolicyConfig(rules=(rule,), flapping=policy.FlappingConfig(max_opens=3)))
    for t in (0.0, 20.0, 40.0):
        assert f.events(run.window(f.data_window(3), t)) == ["opened"]
        assert f.events(run.window(f.data_window(0), t + 10)) == ["resolved"]
    fourth = run.window(f.data_window(3), 60.0)
    assert f.events(fourth) == ["flapping"]
    assert f.kinds(fourth) == [ALERT] and fourth.actions[0].params["flapping"] is True
    later = [run.window(f.data_window(3 if i % 2 else 0), 70.0 + i * 10) for i in range(10)]
    assert all(d.actions == () for d in later)
    assert {e for d in later for e in f.events(d)} == {"held", "updated"}
    assert run.state.incidents[INCIDENT].status == "open"
    settled = run.window(f.data_window(0), 60.0 + 3601.0)
    assert f.events(settled) == ["resolved"] and f.kinds(settled) == [RESOLVE]
    assert run.state.incidents[INCIDENT].flapping is False


def test_acknowledged_incident_is_not_renotified_except_escalation_to_critical() -> None:
    run = _new_version_run(policy.PolicyConfig(remediation=policy.RemediationConfig(on_gradual="none")))
    run.windows([[f.perf_result(0.03, version="1")]] * 2, 1000.0)
    assert f.kinds(run.decisions[-1]) == [ALERT]
    run.overrides = f.override_state("acknowledge:\n  - {incident: model/performance/all}\n")
    severe = run.window([f.perf_result(0.08, version="1")], 2000.0)
    assert severe.actions == ()
    assert [(s.kind, s.reason) for s in severe.suppressed] == [("alert", "acknowledged")]
    critical = run.window([f.perf_result(0.3, version="1")], 2060.0)
    assert f.kinds(critical) == [PAGE, ROLLBACK]


def test_forced_action_is_emitted_once_per_id_even_without_results() -> None:
    run = f.Run()
    run.overrides = f.override_state("force:\n  - {id: op-1, action: rollback, to_version: '3', by: bob}\n")
    first = run.window([], 0.0)
    assert f.kinds(first) == [ROLLBACK]
    request = first.actions[0]
    assert request.idempotency_key == "force/op-1"
    assert dict(request.params) == {
        "forced": True,
        "force_id": "op-1",
        "to_version": "3",
        "requested_by": "bob",
    }
    restored = f.Run(state=policy.PolicyState.from_json(json.loads(json.dumps(run.state.to_json()))))
    restored.overrides = run.overrides
    assert restored.window([], 60.0).actions == ()


def test_unmatched_results_are_counted_not_silently_dropped() -> None:
    config = policy.PolicyConfig(rules=(policy.Rule(id="d", family="data_drift"),))
    decision = f.Run(config=config).window([f.score_result(None, score=900, family=f.LATENCY)], 0.0)
    assert decision.unmatched == 1 and decision.incidents == ()


def test_decide_is_pure_and_its_state_survives_a_json_checkpoint() -> None:
    windows = [f.data_window(d) for d in (3, 3, 3, 6, 6, 0, 0, 0, 3, 3, 3)] + [[f.perf_result(0.3)]]
    whole = f.Run()
    whole.windows(windows, 0.0)
    assert len(set(whole.keys())) == len(whole.keys()) > 4

    before = policy.PolicyState()
    snapshot = json.dumps(before.to_json())
    policy.decide(before, windows[0], policy.PolicyConfig(), f.NO_OVERRIDES, 0.0)
    assert json.dumps(before.to_json()) == snapshot

    first_half = f.Run()
    for index, results in enumerate(windows[:5]):
        first_half.window(results, index * 60.0)
    checkpoint = json.dumps(first_half.state.to_json())
    resumed = f.Run(state=policy.PolicyState.from_json(json.loads(checkpoint)))
    for index, results in enumerate(windows[5:], start=5):
        resumed.window(results, index * 60.0)
    assert first_half.keys() + resumed.keys() == whole.keys()

    again = f.Run()
    again.windows(windows, 0.0)
    assert again.keys() == whole.keys()
    assert [d.to_json() for d in again.decisions] == [d.to_json() for d in whole.decisions]


def test_alert_params_describe_the_incident_for_the_sinks() -> None:
    run = f.Run()
    run.windows([f.data_window(3)] * 3, 0.0)
    params = run.decisions[-1].actions[0].params
    assert params["event"] == "trigger"
    assert params["since"] == 120.0
    assert [d["feature"] for d in params["drifted"]] == ["f0", "f1", "f2"]
    assert params["features"] == ["f0", "f1", "f2"] and params["detectors"] == ["ks"]
    assert "model/data_drift/all" in params["override_hint"]
    assert params["labels"] == {"family": "data_drift", "group": "all", "rule": "data-drift"}
    json.dumps(run.decisions[-1].to_json(), allow_nan=False)


def test_overwhelming_evidence_opens_at_once_and_weak_evidence_needs_persistence() -> None:
    def strong_drop(p_value: float) -> list[base.DetectorResult]:
        return [dataclasses.replace(f.perf_result(0.08), p_value=p_value)]  # a severe accuracy drop

    overwhelming = f.Run().window(strong_drop(1e-9), 0.0)
    assert f.events(overwhelming) == ["opened"] and overwhelming.severity is vocabulary.Severity.SEVERE
    # The same drop on a test that is merely significant waits: material_raise_after windows.
    run = f.Run()
    assert [f.events(run.window(strong_drop(1e-3), t)) for t in (0.0, 60.0)] == [["pending"], ["opened"]]
    # Overwhelming but immaterial (minor) evidence does not skip persistence either.
    minor = f.Run().window([f.pvalue_result("f0", drifted=True, p_value=1e-9, effect=0.1)], 0.0)
    assert f.events(minor) == ["pending"]
    # strong_p_value: null keeps persistence only.
    config = policy.PolicyConfig.model_validate(
        {**policy.PolicyConfig().model_dump(), "rules": [{"id": "all", "strong_p_value": None}]}
    )
    assert f.events(f.Run(config=config).window(strong_drop(1e-9), 0.0)) == ["pending"]


def test_a_sequential_alarm_at_a_record_opens_at_once_unless_the_rule_says_otherwise() -> None:
    def alarm(effect: float, at: int | None) -> list[base.DetectorResult]:
        return [
            base.DetectorResult(
                detector="adwin",
                family=base.DetectorFamily.CONCEPT_DRIFT,
                feature=None,
                statistic="change",
                score=1.0,
                threshold=1.0,
                drifted=True,
                effect_size=effect,
                current_size=250,
                alarm_at_record=at,
            )
        ]

    paged = f.Run().window(alarm(0.1, 12_031), 0.0)
    assert f.events(paged) == ["opened"] and paged.severity is vocabulary.Severity.MODERATE
    assert [a.kind for a in paged.actions] == [ALERT]  # it alerts; remediation waits for windows
    assert paged.incidents[0].incident_id == "model/concept_drift/all"
    # The same verdict from a window (no record named) waits for raise_after windows.
    assert f.events(f.Run().window(alarm(0.1, None), 0.0)) == ["pending"]
    # An immaterial rise (below the rule's moderate band) needs persistence too.
    assert f.events(f.Run().window(alarm(0.01, 12_031), 0.0)) == ["pending"]
    config = policy.PolicyConfig.model_validate(
        {**policy.PolicyConfig().model_dump(), "rules": [{"id": "all", "strong_on_alarm": False}]}
    )
    assert f.events(f.Run(config=config).window(alarm(0.1, 12_031), 0.0)) == ["pending"]


def test_one_feature_with_a_material_shift_alerts_on_its_own() -> None:
    material = f.Run()
    material.windows([f.data_window(1, n_features=20, effect=0.2)] * 2, 0.0)
    # Material (the effect alone grades moderate): opens after material_raise_after (2) windows.
    assert f.events(material.decisions[0]) == ["pending"]
    assert f.kinds(material.decisions[-1]) == [ALERT]
    assert material.decisions[-1].severity is vocabulary.Severity.MODERATE
    config = policy.PolicyConfig.model_validate(
        {**policy.PolicyConfig().model_dump(), "rules": [{"id": "all", "material_raise_after": 3}]}
    )
    slower = f.Run(config=config)
    slower.windows([f.data_window(1, n_features=20, effect=0.2)] * 2, 0.0)
    assert f.events(slower.decisions[-1]) == ["pending"]
    slight = f.Run()
    slight.windows([f.data_window(1, n_features=20, effect=0.1)] * 3, 0.0)
    assert f.kinds(slight.decisions[-1]) == [LOG]  # one of 20 features, slightly: minor, logged


def test_the_remediation_budget_stops_acting_pages_once_and_a_reset_resumes() -> None:
    rule = policy.Rule(
        id="w",
        family="data_drift",
        raise_after=1,
        incident_per_feature=True,
        cooldown_s=0,
        score_ratio=policy.Bands(severe=4),
    )
    budget = policy.RemediationBudget(max_changes=2, window_s=3600)
    run = f.Run(
        config=policy.PolicyConfig(rules=(rule,), remediation=policy.RemediationConfig(budget=budget))
    )
    spent = [
        run.window([f.score_result(feature, score=0.5)], at) for feature, at in (("a", 0.0), ("b", 10.0))
    ]
    assert [f.kinds(d) for d in spent] == [[ALERT, RETRAIN], [ALERT, RETRAIN]]

    exhausted = run.window([f.score_result("c", score=0.5)], 20.0)
    assert f.kinds(exhausted) == [ALERT, PAGE]
    page = exhausted.actions[1]
    assert page.params["budget_exhausted"] is True and page.severity == "critical"
    assert "reset_budget" in page.params["summary"]
    assert exhausted.suppressed[0].reason.startswith("remediation budget exhausted (2 automatic")
    assert f.kinds(run.window([f.score_result("d", score=0.5)], 30.0)) == [ALERT]  # paged once

    # A human resets the budget: the changes before `at` stop counting.
    run.overrides = f.override_state("reset_budget:\n  - {model: '*', at: '1970-01-01T00:00:40Z'}\n")
    assert f.kinds(run.window([f.score_result("e", score=0.5)], 50.0)) == [ALERT, RETRAIN]
    # The budget is per window: an hour later the old changes no longer count either.
    run.overrides = f.NO_OVERRIDES
    assert f.kinds(run.window([f.score_result("g", score=0.5)], 3_700.0)) == [ALERT, RETRAIN]
    # A restarted agent continues from the checkpoint, budget included.
    assert policy.PolicyState.from_json(run.state.to_json()).remediations == run.state.remediations


def test_while_two_versions_serve_each_has_its_own_incidents_and_streaks() -> None:
    """A canary's latency incident is not reset by clean stable windows, nor re-opened as the two
    versions' windows alternate; when the canary ends its incident closes with it."""
    run = f.Run()
    stable, canary = "1", "2"
    run.windows([[f.perf_result(0.0, version=stable)]] * 3, 0.0)
    # Alternating windows: the canary's are bad, the stable version's clean.
    for _ in range(2):
        run.window([f.perf_result(0.08, version=canary)], 10.0)
        run.window([f.perf_result(0.0, version=stable)], 10.0)
    opened = [d for d in run.decisions if "opened" in f.events(d)]
    assert len(opened) == 1
    [report] = [r for r in opened[0].incidents if r.event == "opened"]
    assert report.incident_id == "model/performance/all@model_version=2"
    assert run.state.incidents["model/performance/all@model_version=2"].status == "open"
    assert run.state.incidents["model/performance/all@model_version=1"].status == "closed"
    # The canary is rolled back: after 8 windows of the stable version alone its incident ends,
    # and whoever was alerted hears that it did.
    for _ in range(8):
        run.window([f.perf_result(0.0, version=stable)], 20.0)
    ended = [a for d in run.decisions[-8:] for a in d.actions if a.incident_id.endswith("@model_version=2")]
    assert [a.kind.value for a in ended] == ["resolve"]
    assert "version 2 no longer serves" in ended[0].params["summary"]
    closed = run.state.incidents["model/performance/all@model_version=2"]
    assert closed.status in ("closed",)
    # One version again: its windows count for the model's incident, as before the split.
    last = run.window([f.perf_result(0.0, version=stable)], 30.0)
    assert [r.incident_id for r in last.incidents] == ["model/performance/all"]


def test_an_open_incident_goes_on_through_a_split_without_a_second_page() -> None:
    run = f.Run()
    run.windows([[f.perf_result(0.08, version="1")]] * 2, 0.0)  # version 1 drifts: opened, alerted
    assert f.events(run.decisions[-1]) == ["opened"]
    # A canary of version 2 starts; version 1 keeps drifting. Its incident is carried into the
    # split as version 1's: updated, never opened again.
    for _ in range(3):
        run.window([f.perf_result(0.0, version="2")], 200.0)
        run.window([f.perf_result(0.08, version="1")], 200.0)
    carried = run.state.incidents["model/performance/all@model_version=1"]
    assert carried.status == "open" and carried.epoch == 1
    assert "model/performance/all" not in run.state.incidents
    assert all("opened" not in f.events(d) for d in run.decisions[2:])
    # The canary is rolled back and version 1 serves alone: its incident goes on as the model's,
    # with no resolve and no new page.
    for _ in range(8):
        run.window([f.perf_result(0.08, version="1")], 300.0)
    back = run.state.incidents["model/performance/all"]
    assert back.status == "open" and back.split_version is None
    assert not [
        a
        for d in run.decisions[2:]
        for a in d.actions
        if a.kind in (actions_base.ActionKind.ALERT, actions_base.ActionKind.RESOLVE)
    ]

"""Data quality in the policy: its own incidents that only notify, and drift it explains held back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from actions import base as actions_base
from agent import policy
from detectors import base
from tests.unit.agent import factories as f

PAGE = actions_base.ActionKind.PAGE
ALERT = actions_base.ActionKind.ALERT
RETRAIN = actions_base.ActionKind.RETRAIN
ROLLBACK = actions_base.ActionKind.ROLLBACK
RESOLVE = actions_base.ActionKind.RESOLVE
QUALITY = base.DetectorFamily.QUALITY
FEATURES = tuple(f"f{i}" for i in range(10))


def quality_window(broken: Mapping[str, float], *, n: int = 500) -> list[base.DetectorResult]:
    """A missing_values verdict: the share of nulls per feature, failed where ``broken`` names it."""
    details = tuple(
        base.DetectorResult(
            detector="missing_values",
            family=QUALITY,
            feature=name,
            statistic="null_share",
            score=broken.get(name, 0.01),
            threshold=0.03,
            drifted=name in broken,
            p_value=1e-12 if name in broken else 0.5,
            effect_size=broken.get(name, 0.0),
            current_size=n,
            reference_size=n,
            model_version="1",
        )
        for name in FEATURES
    )
    parent = base.DetectorResult(
        detector="missing_values",
        family=QUALITY,
        feature=None,
        statistic="failed_checks",
        score=float(len(broken)),
        threshold=1.0,
        drifted=bool(broken),
        current_size=n,
        details=details,
    )
    return [parent]


def all_actions(run: f.Run) -> list[actions_base.ActionRequest]:
    return [a for d in run.decisions for a in d.actions]


def suppressed(run: f.Run) -> list[policy.Suppressed]:
    return [s for d in run.decisions for s in d.suppressed]


def broken_amounts(run: f.Run, windows: int, start: float, drifted: int = 6) -> None:
    """Nulls in f0..f5 (30 %) and those features drifted as a consequence."""
    broken = dict.fromkeys(FEATURES[:6], 0.3)
    run.windows([quality_window(broken) + f.data_window(drifted)] * windows, start)


def test_a_broken_pipeline_pages_the_data_owner_and_holds_the_retrain() -> None:
    run = f.Run()
    broken_amounts(run, 3, 0.0)
    first = run.decisions[0]
    # Overwhelming evidence (a null share up 30 %, p = 1e-12) opens each feature's incident at once;
    # a fifth of the values broken pages.
    assert {a.incident_id for a in first.actions if a.kind is PAGE} == {
        f"model/quality/f{i}" for i in range(6)
    }
    actions = all_actions(run)
    assert RETRAIN not in {a.kind for a in actions} and ROLLBACK not in {a.kind for a in actions}
    # The drift opens (severe: 60 % of features) and alerts, saying why nothing else happens.
    alert = next(a for a in actions if a.incident_id == "model/data_drift/all")
    assert alert.kind is ALERT
    explaining = ", ".join(f"model/quality/f{i}" for i in range(6))
    assert (
        alert.params["held"]
        == f"held: data quality incidents {explaining} open: retrain held back until they resolve"
    )
    assert "Held: data quality incident" in alert.params["summary"]
    held = [s for s in suppressed(run) if s.incident_id == "model/data_drift/all"]
    assert [(s.kind, s.reason) for s in held] == [
        ("retrain", f"held: data quality incidents {explaining} open")
    ]
    assert run.state.incidents["model/data_drift/all"].held == ["retrain"]


def test_drift_on_a_clean_feature_still_retrains() -> None:
    run = f.Run()
    only_f9 = quality_window({"f9": 0.3})
    run.windows([only_f9 + f.data_window(6)] * 3, 0.0)
    assert RETRAIN in {a.kind for a in all_actions(run)}
    assert not [s for s in suppressed(run) if s.incident_id == "model/data_drift/all"]


def test_a_held_retrain_goes_out_once_the_pipeline_is_fixed_and_the_drift_stays() -> None:
    run = f.Run()
    broken_amounts(run, 3, 0.0)
    fixed = quality_window({}) + f.data_window(6)
    run.windows([fixed] * 3, 1000.0)
    # The quality incidents resolve on the third fixed window, the drift's first with nothing to
    # explain it; it must go on for raise_after (3) windows in a row before the retrain goes out.
    assert sorted(a.kind.value for a in run.decisions[-1].actions) == ["resolve"] * 6
    run.window(fixed, 2000.0)
    assert RETRAIN not in {a.kind for a in all_actions(run)}
    run.window(fixed, 3000.0)
    last = run.decisions[-1]
    assert [a.kind for a in last.actions] == [RETRAIN]
    retrain = next(a for a in last.actions if a.kind is RETRAIN)
    assert retrain.incident_id == "model/data_drift/all"
    assert run.state.incidents["model/data_drift/all"].held == []
    assert [a.kind for a in all_actions(run)].count(RETRAIN) == 1


def test_drift_that_ends_with_the_break_never_remediates() -> None:
    run = f.Run()
    broken_amounts(run, 3, 0.0)
    run.windows([quality_window({}) + f.data_window(0)] * 4, 1000.0)
    assert RETRAIN not in {a.kind for a in all_actions(run)}
    assert run.state.incidents["model/data_drift/all"].status == "closed"


def test_performance_is_held_while_the_inputs_are_broken() -> None:
    run = f.Run()
    broken = quality_window({"f0": 0.3})
    run.windows([[*broken, f.perf_result(0.1)]] * 3, 0.0)
    performance = [s for s in suppressed(run) if s.incident_id == "model/performance/all"]
    assert performance and performance[0].reason == "held: data quality incident model/quality/f0 open"
    assert not {a.kind for a in all_actions(run)} & {RETRAIN, ROLLBACK}


def test_a_quality_incident_only_notifies_whatever_the_plans_say() -> None:
    with pytest.raises(ValueError, match=r"plans.severe: \['retrain'\] in a quality rule"):
        policy.Rule(
            id="q",
            family="quality",
            plans=policy.ActionPlans(severe=("alert", "retrain")),
        )
    # A catch-all rule with the default plans does match quality results: its remediation is dropped.
    run = f.Run(config=policy.PolicyConfig(rules=(policy.Rule(id="all"),)))
    run.windows([quality_window(dict.fromkeys(FEATURES[:6], 0.3))] * 3, 0.0)  # 60 % failing: severe
    assert {a.kind for a in all_actions(run)} == {ALERT}
    assert [(s.kind, s.reason) for s in suppressed(run)] == [
        ("retrain", "data quality incidents alert or page only")
    ]


def test_a_rule_routes_its_features_to_their_owners_sinks() -> None:
    owners = policy.Rule(
        id="payments",
        family="quality",
        feature="f0",
        incident_per_feature=True,
        raise_after=1,
        effect_size=policy.Bands(severe=0.2),
        sinks=("payments-data",),
        plans=policy.ActionPlans(severe=("page",), critical=("page",)),
    )
    run = f.Run(config=policy.PolicyConfig(rules=(owners, *policy.default_rules())))
    run.window(quality_window({"f0": 0.3, "f1": 0.3}), 0.0)
    by_incident = {a.incident_id: a for a in run.decisions[0].actions}
    assert by_incident["model/quality/f0"].params["sinks"] == ["payments-data"]
    assert "sinks" not in by_incident["model/quality/f1"].params
    run.windows([quality_window({})] * 3, 60.0)
    resolves: Sequence[actions_base.ActionRequest] = run.decisions[-1].actions
    assert {a.incident_id: a.params.get("sinks") for a in resolves if a.kind is RESOLVE} == {
        "model/quality/f0": ["payments-data"],
        "model/quality/f1": None,
    }


def test_an_escalation_caused_by_broken_features_is_held_beside_a_clean_drifted_one() -> None:
    run = f.Run()
    # f0 drifts on its own (no quality problem); then f1..f5 break and drift with it: severe.
    run.windows([quality_window({}) + f.data_window(1)] * 3, 0.0)
    broken = dict.fromkeys(FEATURES[1:6], 0.3)
    run.windows([quality_window(broken) + f.data_window(6)] * 2, 1000.0)
    assert RETRAIN not in {a.kind for a in all_actions(run)}
    held = [s for s in suppressed(run) if s.incident_id == "model/data_drift/all"]
    assert held and held[0].reason.startswith("held: data quality incidents model/quality/f1,")


def test_a_clean_window_restarts_the_count_before_a_held_retrain_goes_out() -> None:
    run = f.Run()
    broken_amounts(run, 3, 0.0)
    fixed = quality_window({}) + f.data_window(6)
    run.windows([fixed] * 3, 1000.0)  # resolved: the drift's first window with nothing to explain it
    run.windows([fixed, quality_window({}) + f.data_window(0), fixed, fixed], 2000.0)
    assert RETRAIN not in {a.kind for a in all_actions(run)}
    run.window(fixed, 3000.0)
    assert [a.kind for a in run.decisions[-1].actions] == [RETRAIN]

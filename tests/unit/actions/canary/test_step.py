"""The pure step function over whole sequences of observations (no I/O, no clock)."""

from __future__ import annotations

import dataclasses

import pytest

from actions.canary import checks as checks_mod
from actions.canary import state as state_mod
from actions.canary import step as step_mod
from actions.targets import base as target_base
from tests.support.canary import factories as f

Phase = state_mod.Phase


def test_healthy_canary_walks_every_step_then_promotes() -> None:
    cfg = f.config()
    state = f.started(cfg)
    percents = [state.percent]
    now = 0.0
    state, actions = step_mod.step(state, f.healthy(5), cfg, now + 30)  # half an interval: nothing yet
    assert f.effects(actions) == [] and "analysis at 5% in 30 s" in actions[0].reason  # type: ignore[union-attr]
    while state.phase is Phase.PROGRESSING:
        now += f.INTERVAL_S
        state, actions = step_mod.step(state, f.healthy(state.percent), cfg, now)
        for action in f.effects(actions):
            if isinstance(action, state_mod.SetTraffic):
                percents.append(action.percent)
    assert percents == [5, 10, 25, 50, 100]
    assert state.phase is Phase.PROMOTING
    assert f.effects(actions) == [state_mod.Promote(f.CANDIDATE, now)]
    assert state.failed_checks == 0

    state, actions = step_mod.step(state, f.healthy(100), cfg, now + 1)  # rollout not reported: done
    assert state.phase is Phase.PROMOTED
    assert state.finished and state.reason == "all 5 steps passed"
    [alert] = f.effects(actions)
    assert isinstance(alert, state_mod.Alert) and alert.event == "promoted"


def test_at_100_percent_relative_checks_use_the_last_stable_baseline() -> None:
    cfg = f.config(steps=[50, 100])
    state = f.started(cfg)
    state, _ = step_mod.step(state, f.healthy(50), cfg, 60)
    assert state.percent == 100
    # No stable traffic at 100%: the canary's 15 ms must still be compared with stable's 10 ms.
    slow = f.healthy(100, canary=f.canary(gpu_latency_p95_ms=15.0))
    assert slow.stable is not None and slow.stable.count == 0
    state, _ = step_mod.step(state, slow, cfg, 120)
    assert state.last_analysis is not None
    [failure] = state.last_analysis.failures
    assert failure.name == "gpu_latency_p95_vs_stable"
    assert failure.baseline == pytest.approx(10.0) and failure.bound == pytest.approx(10.5)  # 5% floor
    assert failure.statistic == "bootstrap_p95_ratio" and failure.n_stable is None  # a fixed baseline


def test_latency_regression_rolls_back_after_max_failed_checks() -> None:
    cfg = f.config(max_failed_checks=2)
    state = f.started(cfg)
    slow = f.healthy(5, canary=f.canary(gpu_latency_p95_ms=12.5))  # stable p95 10 ms, bound 12 ms

    state, actions = step_mod.step(state, slow, cfg, 60)
    assert state.phase is Phase.PROGRESSING and state.failed_checks == 1 and state.percent == 5
    assert f.effects(actions) == []
    state, actions = step_mod.step(state, slow, cfg, 90)  # a failed step is analysed on a fresh interval
    assert state.failed_checks == 1

    state, actions = step_mod.step(state, slow, cfg, 120)
    assert state.phase is Phase.ROLLED_BACK and state.failed_checks == 2
    rollback, alert = f.effects(actions)
    assert isinstance(rollback, state_mod.Rollback) and "gpu_latency_p95_vs_stable" in rollback.reason
    assert "2 of 2" in rollback.reason
    assert isinstance(alert, state_mod.Alert) and alert.event == "rolled_back" and alert.severity == "severe"
    # Finished: later ticks do nothing, whatever they see.
    assert f.effects(step_mod.step(state, f.healthy(), cfg, 999)[1]) == []


def test_flapping_canary_is_rolled_back_failed_checks_count_over_the_whole_canary() -> None:
    """fail, pass, fail: the pass advances a step but does not reset the count (Flagger's semantics)."""
    cfg = f.config(max_failed_checks=2)
    state = f.started(cfg)
    failing = f.canary(errors=20)  # 10% errors: over max_error_rate 5%

    state, _ = step_mod.step(state, f.healthy(5, canary=failing), cfg, 60)
    assert (state.failed_checks, state.percent) == (1, 5)
    state, actions = step_mod.step(state, f.healthy(5), cfg, 120)
    assert f.effects(actions) == [state_mod.SetTraffic(10)] and state.failed_checks == 1
    state, actions = step_mod.step(state, f.healthy(10, canary=failing), cfg, 180)
    assert state.phase is Phase.ROLLED_BACK
    assert isinstance(f.effects(actions)[0], state_mod.Rollback)

    # With a higher threshold the same sequence keeps going.
    lenient = f.config(max_failed_checks=3)
    state = f.started(lenient)
    for now, observed in ((60, failing), (120, f.canary()), (180, failing)):
        state, _ = step_mod.step(state, f.healthy(state.percent, canary=observed), lenient, now)
    assert (state.phase, state.failed_checks, state.percent) == (Phase.PROGRESSING, 2, 10)


def test_missing_data_pauses_the_analysis_and_never_fails_it() -> None:
    cfg = f.config(stall_alert_after_s=600)
    state = f.started(cfg)
    sparse = f.healthy(5, canary=f.canary(count=10, gpu_latency_p95_ms=99.0))  # would fail, if analysed
    alerts = []
    for minute in range(1, 16):
        state, actions = step_mod.step(state, sparse, cfg, 60.0 * minute)
        alerts += [a for a in actions if isinstance(a, state_mod.Alert)]
        assert state.phase is Phase.PROGRESSING and state.failed_checks == 0 and state.percent == 5
        assert state.waiting == "waiting for data: 10 canary records, min_samples is 50"
    # Still waiting 14 minutes on: one "stalled" alert (at 600 s of waiting), not one per tick.
    assert [a.event for a in alerts] == ["stalled"]
    assert state.last_analysis is None

    state, actions = step_mod.step(state, f.healthy(5), cfg, 60.0 * 16)  # data arrives: analysed at once
    assert f.effects(actions) == [state_mod.SetTraffic(10)]
    assert state.waiting == "" and state.waiting_since is None


def test_no_stable_data_waits_only_when_a_relative_check_needs_it() -> None:
    no_stable = f.healthy(5, stable=None)
    cfg = f.config()
    state, actions = step_mod.step(f.started(cfg), no_stable, cfg, 60)
    assert state.waiting.startswith("waiting for data: 0 stable records")

    absolute_only = f.config(
        checks={
            "max_error_rate_increase": None,
            "max_gpu_latency_regression": None,
            "max_latency_regression": None,
            "performance_tolerance": None,
        }
    )
    state, actions = step_mod.step(f.started(absolute_only), no_stable, absolute_only, 60)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]


def test_pause_holds_the_canary_and_resume_restarts_the_interval() -> None:
    cfg = f.config()
    state = f.started(cfg)
    pause = state_mod.Command("pause")
    bad = f.healthy(5, canary=f.canary(errors=100), command=pause)
    for now in (60.0, 120.0, 180.0):
        state, actions = step_mod.step(state, bad, cfg, now)
        assert state.phase is Phase.PAUSED and f.effects(actions) == []
    assert state.failed_checks == 0 and state.percent == 5

    resume = f.healthy(5, command=state_mod.Command("resume"))
    state, actions = step_mod.step(state, resume, cfg, 200.0)
    assert state.phase is Phase.PROGRESSING and f.effects(actions) == []  # a fresh interval starts
    assert state.ready_at == 200.0
    state, actions = step_mod.step(state, f.healthy(5), cfg, 260.0)  # removing the command also resumes
    assert f.effects(actions) == [state_mod.SetTraffic(10)]
    assert [event.what for event in state.history] == ["started", "paused", "resumed", "advanced"]


def test_abort_rolls_back_once_and_promote_skips_the_remaining_steps() -> None:
    cfg = f.config()
    abort = f.healthy(5, command=state_mod.Command("abort", id="INC-7"))
    state, actions = step_mod.step(f.started(cfg), abort, cfg, 10.0)
    assert state.phase is Phase.ROLLED_BACK
    rollback, alert = f.effects(actions)
    assert isinstance(rollback, state_mod.Rollback) and "abort (id INC-7)" in rollback.reason
    assert isinstance(alert, state_mod.Alert)

    promote = f.healthy(5, command=state_mod.Command("promote", id="ok-1"))
    state, actions = step_mod.step(f.started(cfg), promote, cfg, 10.0)
    assert state.phase is Phase.PROMOTING and f.effects(actions) == [state_mod.Promote(f.CANDIDATE, 10.0)]
    # The command stays in the override file: it must not promote again.
    state, actions = step_mod.step(
        state, dataclasses.replace(promote, rollout=target_base.RolloutPhase.PROGRESSING), cfg, 20.0
    )
    assert state.phase is Phase.PROMOTING and f.effects(actions) == []
    state, actions = step_mod.step(state, promote, cfg, 30.0)
    assert state.phase is Phase.PROMOTED


def test_an_operator_abort_during_promotion_rolls_back() -> None:
    cfg = f.config()
    promoting, _ = step_mod.step(f.started(cfg), f.healthy(5, command=state_mod.Command("promote")), cfg, 1)
    abort = f.healthy(100, command=state_mod.Command("abort"), rollout=target_base.RolloutPhase.PROGRESSING)
    state, actions = step_mod.step(promoting, abort, cfg, 2)
    assert state.phase is Phase.ROLLED_BACK and isinstance(f.effects(actions)[0], state_mod.Rollback)


def test_rollout_progress_gates_the_interval_and_a_failed_rollout_rolls_back() -> None:
    cfg = f.config()
    state = f.started(cfg)
    progressing = f.healthy(
        5, rollout=target_base.RolloutPhase.PROGRESSING, rollout_message="0 of 1 updated replicas available"
    )
    state, actions = step_mod.step(state, progressing, cfg, 100.0)
    assert state.ready_at is None and state.waiting.startswith("waiting for the rollout: 0 of 1")
    state, actions = step_mod.step(state, f.healthy(5, rollout=target_base.RolloutPhase.COMPLETE), cfg, 130.0)
    assert state.ready_at == 130.0 and f.effects(actions) == []  # cold start time is not served time
    state, actions = step_mod.step(state, f.healthy(5), cfg, 190.0)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]

    failed = f.healthy(
        10, rollout=target_base.RolloutPhase.FAILED, rollout_message="ProgressDeadlineExceeded"
    )
    state, actions = step_mod.step(state, failed, cfg, 200.0)
    assert state.phase is Phase.ROLLED_BACK and "ProgressDeadlineExceeded" in state.reason


def test_a_change_made_by_someone_else_abandons_the_canary_without_touching_the_target() -> None:
    cfg = f.config()
    moved = f.healthy(5, serving_version="0")  # e.g. the rollback handler restored version 0
    state, actions = step_mod.step(f.started(cfg), moved, cfg, 10.0)
    assert state.phase is Phase.ABANDONED
    [alert] = f.effects(actions)
    assert isinstance(alert, state_mod.Alert) and "version 0 serves now" in alert.reason


def test_restart_mid_canary_resumes_from_the_saved_state(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "canary.json"  # type: ignore[operator]
    cfg = f.config()

    def run(state: state_mod.CanaryState, start: int, stop: int, save: bool) -> state_mod.CanaryState:
        for minute in range(start, stop):
            state, _ = step_mod.step(state, f.healthy(state.percent), cfg, 60.0 * minute)
            if save:
                state_mod.save(path, state)
        return state

    uninterrupted = run(f.started(cfg), 1, 8, save=False)
    before_crash = run(f.started(cfg), 1, 3, save=True)
    assert before_crash.percent == 25
    restored = state_mod.load(path)
    assert restored == before_crash
    assert restored is not None
    assert run(restored, 3, 8, save=False) == uninterrupted


@pytest.mark.parametrize(
    ("check", "departure"),
    [
        ("error_rate", {"canary": f.canary(errors=40)}),  # 8% > 5%; stable 1% + 1% also exceeded below
        ("gpu_latency_p95_vs_stable", {"canary": f.canary(gpu_latency_p95_ms=12.1)}),
        ("latency_p95_vs_stable", {"canary": f.canary(latency_p95_ms=36.1)}),
        ("data_drift", {"data_drift": state_mod.DriftSummary("data_drift", 0.75, ("a", "b", "c"))}),
        ("performance", {"performance": f.performance(canary=0.87, p_value=0.001)}),
    ],
)
def test_each_check_in_the_table_fails_on_its_own(check: str, departure: dict[str, object]) -> None:
    cfg = f.config(checks={"max_error_rate_increase": None})
    state, _ = step_mod.step(f.started(cfg), f.healthy(5, **departure), cfg, 60)  # type: ignore[arg-type]
    assert state.last_analysis is not None
    assert [c.name for c in state.last_analysis.failures] == [check]
    enabled = [c.name for c in state.last_analysis.checks]
    assert enabled == [c.name for c in checks_mod.enabled(cfg.checks)]
    assert "error_rate_vs_stable" not in enabled and "gpu_latency_p95_slo" not in enabled  # null = off


def test_absolute_slos_and_opt_in_checks() -> None:
    cfg = f.config(
        checks={"gpu_p95_slo_ms": 8.0, "latency_p95_slo_ms": 50.0, "max_prediction_drift_share": 0.4}
    )
    drift = state_mod.DriftSummary("prediction_drift", 0.5, ("prediction",))
    state, _ = step_mod.step(f.started(cfg), f.healthy(5, prediction_drift=drift), cfg, 60)
    assert state.last_analysis is not None
    assert {c.name for c in state.last_analysis.failures} == {"gpu_latency_p95_slo", "prediction_drift"}


def test_error_rate_relative_to_stable_and_regression_metrics_where_lower_is_better() -> None:
    cfg = f.config(checks={"max_error_rate": None})
    worse_than_stable = f.healthy(5, canary=f.canary(errors=25))  # 5% vs stable 1% + 1%
    state, _ = step_mod.step(f.started(cfg), worse_than_stable, cfg, 60)
    assert state.last_analysis is not None
    [failure] = state.last_analysis.failures
    assert (failure.name, failure.value) == ("error_rate_vs_stable", 0.05)
    assert failure.bound == pytest.approx(0.02) and failure.baseline == pytest.approx(0.01)
    assert failure.statistic == "binomial" and failure.p_value is not None and failure.p_value < 0.01

    # rmse: the canary may rise at most the tolerance (relative) above stable.
    regression = f.healthy(
        5,
        performance=f.performance(
            metric="rmse", canary=3.3, stable=3.0, p_value=0.001, higher_is_better=False
        ),
    )
    cfg = f.config(checks={"performance_tolerance": 0.05})
    state, _ = step_mod.step(f.started(cfg), regression, cfg, 60)
    assert state.last_analysis is not None
    [failure] = state.last_analysis.failures
    assert failure.name == "performance" and failure.bound == pytest.approx(3.15)
    assert regression.performance is not None
    better = dataclasses.replace(
        regression, performance=dataclasses.replace(regression.performance, canary=2.5, p_value=1.0)
    )
    state, actions = step_mod.step(f.started(cfg), better, cfg, 60)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]


def test_checks_without_data_are_inconclusive_and_hold_the_step_never_pass_it() -> None:
    cfg = f.config(stall_alert_after_s=10_000)
    blind = f.healthy(
        5, canary=f.canary(gpu_latency_p95_ms=None), data_drift=None, performance=None, labels_expected=True
    )
    state, actions = step_mod.step(f.started(cfg), blind, cfg, 60)
    assert f.effects(actions) == [] and state.percent == 5 and state.failed_checks == 0
    assert state.last_analysis is not None and not state.last_analysis.passed
    outcomes = {c.name: c.outcome for c in state.last_analysis.checks}
    assert outcomes["gpu_latency_p95_vs_stable"] == "inconclusive"
    assert outcomes["data_drift"] == "inconclusive"
    assert outcomes["performance"] == "inconclusive"
    assert state.waiting.startswith("inconclusive at 5%: gpu_latency_p95_vs_stable")
    # Without any labels source the performance check is not applicable, and says so.
    no_labels = dataclasses.replace(f.healthy(5), performance=None, labels_expected=False)
    state, actions = step_mod.step(f.started(cfg), no_labels, cfg, 60)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]
    assert state.last_analysis is not None
    [performance] = [c for c in state.last_analysis.checks if c.name == "performance"]
    assert performance.note == "not applicable: the agent has no labels source"


def test_begin_refuses_a_candidate_that_already_serves() -> None:
    with pytest.raises(ValueError, match="candidate_version '1' must be a version other than the stable one"):
        step_mod.begin(
            canary_id="x", model_name="m", stable_version="1", candidate_version="1", config=f.config(), now=0
        )


def test_a_latency_neither_version_logs_is_not_applicable_but_one_only_stable_logs_holds_the_step() -> None:
    cfg = f.config(stall_alert_after_s=10_000)
    no_gpu_timer = f.healthy(
        5, canary=f.canary(gpu_latency_p95_ms=None), stable=f.stable(gpu_latency_p95_ms=None)
    )
    state, actions = step_mod.step(f.started(cfg), no_gpu_timer, cfg, 60)
    assert f.effects(actions) == [state_mod.SetTraffic(10)]
    assert state.last_analysis is not None
    [gpu] = [c for c in state.last_analysis.checks if c.name == "gpu_latency_p95_vs_stable"]
    assert (gpu.outcome, gpu.note) == ("pass", "not applicable: neither version logs this latency")
    only_stable = f.healthy(5, canary=f.canary(gpu_latency_p95_ms=None))
    state, actions = step_mod.step(f.started(cfg), only_stable, cfg, 60)
    assert f.effects(actions) == [] and state.waiting.startswith(
        "inconclusive at 5%: gpu_latency_p95_vs_stable"
    )

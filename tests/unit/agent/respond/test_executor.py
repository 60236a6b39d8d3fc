"""The executor: leader gating, overrides, idempotency across restarts, containment, lanes, metrics.

Handlers here are small real ``ActionHandler`` classes that record what they were asked; the
alert sinks and the rollback handler have their own tests against real receivers and servers.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Mapping
from typing import Any

import prometheus_client
import pytest

from actions import base
from agent import overrides, policy
from agent.observability import audit
from agent.respond import executor, idempotency, retry
from tests.unit.agent import factories as f

T0 = 1_900_000_000.0
WAIT_S = 30.0  # bound on waits for worker threads; never reached when the code is right


class Recording(base.ActionHandler):
    def __init__(
        self, kind: base.ActionKind, status: base.OutcomeStatus = base.OutcomeStatus.SUCCEEDED
    ) -> None:
        self.kind = kind
        self.status = status
        self.calls: list[tuple[base.ActionRequest, bool]] = []
        self.done = threading.Event()

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        self.calls.append((request, dry_run))
        self.done.set()
        message = f"would {self.kind.value}" if dry_run else f"did {self.kind.value}"
        return base.ActionOutcome(self.status, message)


class Exploding(base.ActionHandler):
    kind = base.ActionKind.ALERT

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        raise RuntimeError("sink exploded")


class Blocking(base.ActionHandler):
    """Holds its lane until released, like a sink that hangs or a retrain that trains for hours."""

    def __init__(self, kind: base.ActionKind = base.ActionKind.ALERT) -> None:
        self.kind = kind
        self.started = threading.Event()
        self.release = threading.Event()
        self.handled: list[str] = []

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        self.started.set()
        self.release.wait(WAIT_S)
        self.handled.append(request.idempotency_key)
        return base.ActionOutcome(base.OutcomeStatus.SUCCEEDED)


class TwoPhaseRollback(base.ActionHandler):
    """Starts a rollout (in_progress) and confirms it when handed the key again."""

    kind = base.ActionKind.ROLLBACK

    def __init__(self) -> None:
        self.calls: list[Mapping[str, Any]] = []

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        self.calls.append(dict(request.params))
        if request.params.get("resume"):
            return base.ActionOutcome(base.OutcomeStatus.SUCCEEDED, "confirmed: version 3 serving")
        return base.ActionOutcome(base.OutcomeStatus.IN_PROGRESS, "rollout to 3 started")


def _request(kind: base.ActionKind, key: str = "m/performance/all#1/x", **params: Any) -> base.ActionRequest:
    return base.ActionRequest(
        kind=kind,
        model_name="m",
        idempotency_key=key,
        incident_id="m/performance/all",
        severity="severe",
        reason="test",
        params={"family": "performance", **params},
    )


class Harness:
    def __init__(
        self,
        tmp_path: pathlib.Path,
        handlers: Mapping[base.ActionKind, base.ActionHandler],
        *,
        leader: bool = True,
        overrides_text: str = "",
        dry_run: bool = False,
        queue_size: int = 16,
        retry_policy: retry.RetryPolicy | None = None,
    ) -> None:
        self.now = T0
        self.registry = prometheus_client.CollectorRegistry()
        self.audit_path = tmp_path / "audit.jsonl"
        self.audit = audit.AuditLog(self.audit_path, clock=lambda: T0)
        self.store = idempotency.FileIdempotencyStore(tmp_path / "idempotency.jsonl", clock=lambda: self.now)
        self.leader = leader
        self.overrides = f.override_state(overrides_text) if overrides_text else overrides.OverrideState()
        self.metrics = executor.Metrics(self.registry)
        self.executor = executor.Executor(
            handlers,
            store=self.store,
            audit=self.audit,
            overrides_state=lambda: self.overrides,
            is_leader=lambda: self.leader,
            clock=lambda: self.now,
            metrics=self.metrics,
            queue_size=queue_size,
            dry_run=dry_run,
            retry_policy=retry_policy,
        )

    def entries(self) -> list[dict[str, Any]]:
        return list(audit.read_entries(self.audit_path))

    def count(self, kind: str, status: str) -> float | None:
        return self.registry.get_sample_value("drift_agent_actions_total", {"kind": kind, "status": status})


def test_unknown_or_mismatched_handlers_fail_at_construction(tmp_path: pathlib.Path) -> None:
    store = idempotency.FileIdempotencyStore(tmp_path / "i.jsonl")
    log = audit.AuditLog(None)

    def build(handlers: Mapping[Any, base.ActionHandler], required: set[base.ActionKind]) -> None:
        executor.Executor(
            handlers,
            store=store,
            audit=log,
            overrides_state=overrides.OverrideState,
            is_leader=lambda: True,
            required_kinds=required,
        )

    with pytest.raises(executor.ExecutorError, match="'alert' is not an ActionKind; valid kinds: log, alert"):
        build({"alert": Recording(base.ActionKind.ALERT)}, set())
    with pytest.raises(executor.ExecutorError, match="registered for 'page' but declares"):
        build({base.ActionKind.PAGE: Recording(base.ActionKind.ROLLBACK)}, set())
    with pytest.raises(executor.ExecutorError, match="can ask for page, retrain, rollback but no handler"):
        build(
            {base.ActionKind.ALERT: Recording(base.ActionKind.ALERT)},
            policy.action_kinds(policy.PolicyConfig()) - {base.ActionKind.RESOLVE},
        )
    build(
        {k: Recording(k) for k in policy.action_kinds(policy.PolicyConfig())},
        policy.action_kinds(policy.PolicyConfig()),
    )


def test_only_the_leader_acts_and_the_key_stays_free(tmp_path: pathlib.Path) -> None:
    alert = Recording(base.ActionKind.ALERT)
    h = Harness(tmp_path, {base.ActionKind.ALERT: alert}, leader=False)
    skipped = h.executor.execute(_request(base.ActionKind.ALERT))
    assert (
        skipped.outcome.status is base.OutcomeStatus.SKIPPED
        and skipped.outcome.details["reason"] == "not_leader"
    )
    assert alert.calls == [] and h.store.get("m/performance/all#1/x") is None
    h.leader = True
    assert h.executor.execute(_request(base.ActionKind.ALERT)).outcome.status is base.OutcomeStatus.SUCCEEDED
    assert len(alert.calls) == 1
    assert h.count("alert", "skipped") == 1 and h.count("alert", "succeeded") == 1


def test_dry_run_asks_the_handler_what_it_would_do_and_changes_nothing(tmp_path: pathlib.Path) -> None:
    rollback = Recording(base.ActionKind.ROLLBACK)
    h = Harness(
        tmp_path,
        {base.ActionKind.ROLLBACK: rollback},
        overrides_text="dry_run: {enabled: true, reason: shadow}\n",
    )
    done = h.executor.execute(_request(base.ActionKind.ROLLBACK))
    assert done.outcome.status is base.OutcomeStatus.SKIPPED and done.outcome.message == "dry_run"
    assert done.outcome.details["would"] == {"status": "succeeded", "message": "would rollback"}
    assert [dry for _, dry in rollback.calls] == [True]
    assert h.store.get("m/performance/all#1/x") is None
    [entry] = h.entries()
    assert entry["outcome"]["message"] == "dry_run" and entry["overrides"]["dry_run"] == [
        {"enabled": True, "reason": "shadow"}
    ]

    replay = Harness(tmp_path / "replay", {base.ActionKind.ROLLBACK: rollback}, dry_run=True)
    assert replay.executor.execute(_request(base.ActionKind.ROLLBACK)).outcome.message == "dry_run"
    assert [dry for _, dry in rollback.calls] == [True, True]


def test_freeze_pin_and_mute_skip_with_the_reason_and_force_bypasses_freeze(tmp_path: pathlib.Path) -> None:
    handlers = {k: Recording(k) for k in (base.ActionKind.ROLLBACK, base.ActionKind.ALERT)}
    until = "'2031-01-01T00:00:00Z'"
    h = Harness(
        tmp_path,
        handlers,
        overrides_text=f"freeze:\n  - {{model: m, until: {until}}}\nmute:\n  - {{until: {until}}}\n",
    )
    assert h.executor.execute(_request(base.ActionKind.ROLLBACK)).outcome.message == "frozen"
    assert h.executor.execute(_request(base.ActionKind.ALERT, "k2")).outcome.message == "muted"
    forced = h.executor.execute(_request(base.ActionKind.ROLLBACK, "force/op-1", forced=True, to_version="3"))
    assert forced.outcome.status is base.OutcomeStatus.SUCCEEDED
    assert [r.params["to_version"] for r, _ in handlers[base.ActionKind.ROLLBACK].calls] == ["3"]
    h.overrides = f.override_state("pins:\n  - {model: m, version: '7'}\n")
    pinned = h.executor.execute(_request(base.ActionKind.ROLLBACK, "force/op-2", forced=True))
    assert pinned.outcome.message == "pinned" and pinned.outcome.details["entry"] == {
        "model": "m",
        "version": "7",
    }


def test_a_done_key_never_runs_twice_even_after_a_restart(tmp_path: pathlib.Path) -> None:
    rollback = Recording(base.ActionKind.ROLLBACK)
    first = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    assert (
        first.executor.execute(_request(base.ActionKind.ROLLBACK)).outcome.status
        is base.OutcomeStatus.SUCCEEDED
    )
    restarted = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})  # new store on the same file
    again = restarted.executor.execute(_request(base.ActionKind.ROLLBACK))
    assert len(rollback.calls) == 1
    assert again.outcome.status is base.OutcomeStatus.SUCCEEDED and again.outcome.details["duplicate"] is True
    assert again.outcome.message == "did rollback"
    assert restarted.entries()[-1]["duplicate"] is True


def test_a_key_begun_before_a_crash_is_resumed_not_repeated(tmp_path: pathlib.Path) -> None:
    request = _request(base.ActionKind.ROLLBACK, to_version="3")
    crashed = idempotency.FileIdempotencyStore(tmp_path / "idempotency.jsonl")
    assert crashed.begin(request.idempotency_key, request) is None  # ...and the process died here
    rollback = TwoPhaseRollback()
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    [resumed] = h.executor.resume_pending()
    assert rollback.calls == [
        {"family": "performance", "to_version": "3", "resume": True, "previous_attempts": 1}
    ]
    assert resumed.outcome.status is base.OutcomeStatus.SUCCEEDED
    assert h.store.pending() == []


def test_in_progress_outcomes_are_confirmed_by_a_later_resume(tmp_path: pathlib.Path) -> None:
    rollback = TwoPhaseRollback()
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    started = h.executor.execute(_request(base.ActionKind.ROLLBACK))
    assert started.outcome.status is base.OutcomeStatus.IN_PROGRESS
    assert [r.key for r in h.store.pending()] == ["m/performance/all#1/x"]
    restarted = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    [confirmed] = restarted.executor.resume_pending()
    assert confirmed.outcome.message == "confirmed: version 3 serving"
    assert rollback.calls[1]["resume"] is True and rollback.calls[1]["previous_attempts"] == 1
    assert restarted.store.pending() == []
    assert restarted.executor.resume_pending() == []


def test_resubmit_pending_hands_in_progress_keys_to_the_worker(tmp_path: pathlib.Path) -> None:
    rollback = TwoPhaseRollback()
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    h.executor.execute(_request(base.ActionKind.ROLLBACK))
    h.executor.start()
    try:
        assert h.executor.resubmit_pending() == 1
    finally:
        assert h.executor.stop(WAIT_S)
    assert [c.get("resume", False) for c in rollback.calls] == [False, True]
    assert h.store.pending() == []


def test_a_torn_last_line_of_the_store_is_skipped(tmp_path: pathlib.Path) -> None:
    store = idempotency.FileIdempotencyStore(tmp_path / "idempotency.jsonl")
    store.begin("a", _request(base.ActionKind.ALERT, "a"))
    store.finish("a", base.ActionOutcome(base.OutcomeStatus.SUCCEEDED))
    with (tmp_path / "idempotency.jsonl").open("a") as handle:
        handle.write('{"op": "begin", "key": "b", "at": 1')
    reopened = idempotency.FileIdempotencyStore(tmp_path / "idempotency.jsonl")
    record = reopened.get("a")
    assert record is not None and record.done and reopened.get("b") is None


def test_handler_exceptions_become_failed_outcomes_not_crashes(tmp_path: pathlib.Path) -> None:
    h = Harness(tmp_path, {base.ActionKind.ALERT: Exploding()})
    done = h.executor.execute(_request(base.ActionKind.ALERT))
    assert done.outcome.status is base.OutcomeStatus.FAILED
    assert done.outcome.message == "handler raised RuntimeError: sink exploded"
    assert h.entries()[-1]["outcome"]["status"] == "failed"
    assert h.count("alert", "failed") == 1
    missing = h.executor.execute(_request(base.ActionKind.RETRAIN, "k3"))
    assert missing.outcome.status is base.OutcomeStatus.FAILED
    assert "no handler for 'retrain'; registered: alert" in missing.outcome.message


class Refusing(base.ActionHandler):
    kind = base.ActionKind.ROLLBACK

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        return base.ActionOutcome(
            base.OutcomeStatus.FAILED,
            "version 3 was restored 10 minutes ago and is unhealthy too",
            {"reason": "circuit_open", "recommendation": "page"},
        )


def test_a_remediation_that_asks_for_a_human_pages_once(tmp_path: pathlib.Path) -> None:
    pager = Recording(base.ActionKind.PAGE)
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: Refusing(), base.ActionKind.PAGE: pager})
    h.executor.start()
    try:
        h.executor.execute(_request(base.ActionKind.ROLLBACK))
        assert pager.done.wait(WAIT_S)
        h.executor.execute(_request(base.ActionKind.ROLLBACK))  # a duplicate: no second page
    finally:
        assert h.executor.stop(WAIT_S)
    [(page, _)] = pager.calls
    assert page.idempotency_key == "m/performance/all#1/x/page" and page.severity == "critical"
    assert "circuit_open" in page.params["action"]


class Unreachable(base.ActionHandler):
    """Fails retryably (the API server is down) ``failures`` times, then rolls back."""

    kind = base.ActionKind.ROLLBACK

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[Mapping[str, Any]] = []

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        self.calls.append(dict(request.params))
        if len(self.calls) <= self.failures:
            return base.ActionOutcome(
                base.OutcomeStatus.FAILED,
                "cannot reach the API server",
                {"reason": "target_unavailable", "retryable": True},
            )
        return base.ActionOutcome(base.OutcomeStatus.SUCCEEDED, "rolled back to 3")


def test_a_retryable_failure_is_tried_again_after_a_growing_backoff(tmp_path: pathlib.Path) -> None:
    handler = Unreachable(failures=2)
    policy_ = retry.RetryPolicy(max_attempts=5, initial_backoff_s=10, max_backoff_s=300)
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: handler}, retry_policy=policy_)
    request = _request(base.ActionKind.ROLLBACK)

    first = h.executor.execute(request).outcome
    assert first.status is base.OutcomeStatus.IN_PROGRESS and first.details["retry_at"] == T0 + 10
    assert [r.key for r in h.store.pending()] == [request.idempotency_key]
    h.now = T0 + 9  # backing off: the handler is not asked, nothing is audited
    audited = len(h.entries())
    assert h.executor.execute(request).outcome.details["reason"] == "retry_wait"
    assert len(handler.calls) == 1 and len(h.entries()) == audited

    h.now = T0 + 10
    second = h.executor.execute(request).outcome
    assert second.status is base.OutcomeStatus.IN_PROGRESS and second.details["retry_at"] == T0 + 30
    assert handler.calls[1]["resume"] is True
    h.now = T0 + 30
    # A restart in between keeps the wait: it is in the journal, not in memory.
    h2 = Harness(tmp_path, {base.ActionKind.ROLLBACK: handler}, retry_policy=policy_)
    h2.now = T0 + 29
    assert h2.executor.execute(request).outcome.details["reason"] == "retry_wait"
    h2.now = T0 + 30
    assert h2.executor.execute(request).outcome.status is base.OutcomeStatus.SUCCEEDED
    assert len(handler.calls) == 3 and h2.store.pending() == []
    assert h2.executor.execute(request).outcome.details["duplicate"] is True
    assert len(handler.calls) == 3


def test_the_last_retryable_failure_is_final_and_pages_a_human(tmp_path: pathlib.Path) -> None:
    handler, pager = Unreachable(failures=99), Recording(base.ActionKind.PAGE)
    h = Harness(
        tmp_path,
        {base.ActionKind.ROLLBACK: handler, base.ActionKind.PAGE: pager},
        retry_policy=retry.RetryPolicy(max_attempts=2, initial_backoff_s=10, max_backoff_s=300),
    )
    h.executor.start()
    try:
        request = _request(base.ActionKind.ROLLBACK)
        assert h.executor.execute(request).outcome.status is base.OutcomeStatus.IN_PROGRESS
        assert not pager.calls
        h.now = T0 + 10
        last = h.executor.execute(request).outcome
        assert last.status is base.OutcomeStatus.FAILED and last.details["gave_up_after"] == 2
        assert last.message.startswith("gave up after 2 attempts: cannot reach the API server")
        assert pager.done.wait(WAIT_S)
    finally:
        assert h.executor.stop(WAIT_S)
    [(page, _)] = pager.calls
    assert page.idempotency_key == request.idempotency_key + "/page"
    assert h.store.pending() == [] and len(handler.calls) == 2


def test_backoff_doubles_and_is_capped() -> None:
    policy_ = retry.RetryPolicy(max_attempts=9, initial_backoff_s=10, max_backoff_s=60)
    assert [policy_.backoff_s(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    final = base.ActionOutcome(base.OutcomeStatus.FAILED, "bad request", {"retryable": False})
    assert policy_.judge(final, 1, T0) is final


def test_log_actions_need_no_handler(tmp_path: pathlib.Path) -> None:
    h = Harness(tmp_path, {})
    assert h.executor.execute(_request(base.ActionKind.LOG)).outcome.status is base.OutcomeStatus.SUCCEEDED
    assert h.entries()[-1]["request"]["kind"] == "log"


def test_a_hanging_sink_neither_blocks_submit_nor_delays_a_rollback(tmp_path: pathlib.Path) -> None:
    alerts = Blocking()
    rollback = Recording(base.ActionKind.ROLLBACK)
    h = Harness(tmp_path, {base.ActionKind.ALERT: alerts, base.ActionKind.ROLLBACK: rollback}, queue_size=2)
    h.executor.start()
    try:
        assert h.executor.submit([_request(base.ActionKind.ALERT, "a1")]) == 1
        assert alerts.started.wait(WAIT_S)  # the notify worker is now stuck in the sink
        assert h.executor.submit([_request(base.ActionKind.ROLLBACK, "r1")]) == 1
        assert rollback.done.wait(WAIT_S)  # the remediation lane went ahead regardless
        queued = h.executor.submit([_request(base.ActionKind.ALERT, k) for k in ("a2", "a3", "a4")])
        assert queued == 2  # the third did not fit: dropped, not waited for
        assert h.registry.get_sample_value("drift_agent_actions_dropped_total", {"kind": "alert"}) == 1
        assert [e["idempotency_key"] for e in h.entries() if e["kind"] == audit.ACTION_DROPPED] == ["a4"]
        assert alerts.handled == []
    finally:
        alerts.release.set()
        assert h.executor.stop(WAIT_S)
    assert alerts.handled == ["a1", "a2", "a3"]


def test_metrics_follow_the_policy_state_and_the_overrides() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = executor.Metrics(registry)
    run = f.Run()
    now = {"t": T0}
    state = f.override_state(
        "mute:\n  - {until: '2030-03-17T18:00:00Z'}\npins:\n  - {model: m, version: '1'}\n"
    )
    # The gauges read the live state at scrape time: nothing is pushed to them.
    metrics.watch_policy(lambda: {"model": run.state})
    metrics.watch_overrides(lambda: state, lambda: now["t"])
    run.window([f.perf_result(0.3)], T0)
    run.windows([f.data_window(3)] * 3, T0)

    def severity(family: str) -> float | None:
        return registry.get_sample_value("drift_agent_severity", {"model": "model", "family": family})

    assert severity("performance") == 4 and severity("data_drift") == 2 and severity("latency") == 0
    assert registry.get_sample_value("drift_agent_incidents_open", {"model": "model"}) == 2
    run.windows([f.data_window(0)] * 3, T0 + 1000)
    assert severity("data_drift") == 0
    assert registry.get_sample_value("drift_agent_incidents_open", {"model": "model"}) == 1

    assert registry.get_sample_value("drift_agent_overrides_in_force", {"kind": "mute"}) == 1
    assert registry.get_sample_value("drift_agent_overrides_in_force", {"kind": "pin"}) == 1
    now["t"] = T0 + 7200  # the mute has expired, the pin has no expiry
    assert registry.get_sample_value("drift_agent_overrides_in_force", {"kind": "mute"}) == 0
    assert registry.get_sample_value("drift_agent_overrides_in_force", {"kind": "pin"}) == 1


def test_end_to_end_decisions_through_the_executor_with_a_restart(tmp_path: pathlib.Path) -> None:
    """A critical drop pages and rolls back once; replaying the same windows after a restart does nothing."""
    windows = [[f.perf_result(0.0, version="1")]] * 2 + [[f.perf_result(0.3, version="2")]]
    handlers = {k: Recording(k) for k in policy.action_kinds(policy.PolicyConfig())}

    def run_once(workdir: pathlib.Path) -> list[str]:
        h = Harness(workdir, handlers)
        run = f.Run()
        outcomes = []
        for index, results in enumerate(windows):
            decision = run.window(results, T0 + index * 60)
            executor.audit_decision(h.audit, decision)
            outcomes += [
                h.executor.execute(a).outcome.details.get("duplicate", False) for a in decision.actions
            ]
        return ["duplicate" if dup else "ran" for dup in outcomes]

    assert run_once(tmp_path) == ["ran", "ran"]
    assert run_once(tmp_path) == ["duplicate", "duplicate"]
    assert [len(h.calls) for h in handlers.values() if h.calls] == [1, 1]


def test_a_rollback_never_waits_behind_a_long_retrain(tmp_path: pathlib.Path) -> None:
    retrain = Blocking(base.ActionKind.RETRAIN)
    rollback = Recording(base.ActionKind.ROLLBACK)
    h = Harness(tmp_path, {base.ActionKind.RETRAIN: retrain, base.ActionKind.ROLLBACK: rollback})
    h.executor.start()
    try:
        assert h.executor.submit([_request(base.ActionKind.RETRAIN, "t1")]) == 1
        assert retrain.started.wait(WAIT_S)  # training, for as long as it takes
        assert h.executor.submit([_request(base.ActionKind.ROLLBACK, "r1")]) == 1
        assert rollback.done.wait(WAIT_S)  # went ahead while the retrain still runs
        assert retrain.handled == []
    finally:
        retrain.release.set()
        assert h.executor.stop(WAIT_S)


def test_the_lease_is_asked_again_right_before_the_side_effect(tmp_path: pathlib.Path) -> None:
    rollback = Recording(base.ActionKind.ROLLBACK)
    h = Harness(tmp_path, {base.ActionKind.ROLLBACK: rollback})
    answers = iter([True, False])  # leader when the request is taken, lapsed when it would act
    h.executor._is_leader = lambda: next(answers)
    executed = h.executor.execute(_request(base.ActionKind.ROLLBACK, "r1"))
    assert executed.outcome.status is base.OutcomeStatus.IN_PROGRESS
    assert executed.outcome.details["reason"] == "not_leader"
    assert rollback.calls == []  # nothing was done
    # Not final: the key stays pending, so the next leader resumes it.
    assert [record.key for record in h.store.pending()] == ["r1"]

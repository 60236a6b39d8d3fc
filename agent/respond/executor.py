"""The action executor: runs the policy's requests off the detection path, exactly once each.

``submit`` never blocks: requests go to bounded queues served by worker threads, one lane for
notifications (log/alert/page/resolve), one for rollbacks and one for retrains and canaries, so a
slow Slack never delays a rollback, a two-hour retrain never delays one either, and none of them
delays detection. A full queue drops the
request, audited and counted, rather than stall the loop.

For each request ``execute``:

1. not the leader -> ``skipped`` (``not_leader``); the key is not consumed, the leader acts;
2. an override stops it (``overrides.OverrideState.skip_reason``: dry_run, pinned, frozen,
   muted) -> ``skipped`` with the reason; with dry_run the handler is still asked, with
   ``dry_run=True``, what it would do (its answer lands in the outcome details);
3. ``store.begin(key)``: a key already done -> its previous outcome, not run again; a key begun
   but never finished (a crash, or an ``in_progress`` outcome) -> the handler gets it again with
   ``params["resume"] = True`` and ``params["previous_attempts"]`` so it confirms or completes
   instead of repeating;
4. the handler runs; an exception becomes a ``failed`` outcome, never a crash;
5. a ``retryable`` failure is not final (``retry.RetryPolicy``): the key stays pending with the
   time of its next try, and a resubmission before that time is left waiting, unrecorded; the
   last allowed try fails for good and pages;
6. ``store.finish(key, outcome)``, one audit line, metrics.

LOG requests need no handler: the audit line is the action.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import prometheus_client

from actions import base, vocabulary
from agent import overrides, policy
from agent.observability import audit as audit_mod
from agent.observability import collectors, errors
from agent.respond import idempotency, retry
from detectors import base as detectors_base

LOG = logging.getLogger(__name__)

NOTIFY_LANE = "notify"
# A rollback restores a known-good version in seconds; it must never wait behind a retrain that
# trains for minutes, or a canary step: it has a lane (and a worker) of its own.
ROLLBACK_LANE = "rollback"
REMEDIATE_LANE = "remediate"
_LANE_OF = {
    base.ActionKind.LOG: NOTIFY_LANE,
    base.ActionKind.ALERT: NOTIFY_LANE,
    base.ActionKind.PAGE: NOTIFY_LANE,
    base.ActionKind.RESOLVE: NOTIFY_LANE,
    base.ActionKind.ROLLBACK: ROLLBACK_LANE,
    base.ActionKind.RETRAIN: REMEDIATE_LANE,
    base.ActionKind.CANARY: REMEDIATE_LANE,
}


class ExecutorError(ValueError):
    """A misconfigured executor (missing or mismatched handlers); raised at construction."""


class Metrics:
    """The policy's and executor's Prometheus series, on a registry passed in.

    Counters count actions as they end; the gauges (severity, open incidents, overrides in force,
    queue depth) read the current state at scrape time.
    """

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.registry = registry
        self.actions = prometheus_client.Counter(
            "drift_agent_actions",
            "Actions by kind and outcome status.",
            ["kind", "status"],
            registry=registry,
        )
        self.actions_dropped = prometheus_client.Counter(
            "drift_agent_actions_dropped",
            "Actions dropped because the executor queue was full.",
            ["kind"],
            registry=registry,
        )

    def watch_policy(self, states: Callable[[], Mapping[str, policy.PolicyState]]) -> None:
        """Severity per family and open incidents of every model ``states`` returns (model -> state):
        the models this agent evaluates now."""
        collectors.register_gauge(
            self.registry,
            collectors.SEVERITY,
            lambda: [
                sample for model, state in states().items() for sample in severity_samples(model, state)
            ],
        )
        collectors.register_gauge(
            self.registry,
            collectors.INCIDENTS_OPEN,
            lambda: [((model,), float(open_incidents(model, state))) for model, state in states().items()],
        )

    def watch_overrides(
        self, state: Callable[[], overrides.OverrideState], clock: Callable[[], float]
    ) -> None:
        collectors.register_gauge(
            self.registry,
            collectors.OVERRIDES_IN_FORCE,
            lambda: [((kind,), float(count)) for kind, count in state().in_force(clock()).items()],
        )


def severity_samples(model: str, state: policy.PolicyState) -> list[collectors.Sample]:
    worst: dict[str, vocabulary.Severity] = {
        family.value: vocabulary.Severity.NONE for family in detectors_base.DetectorFamily
    }
    for incident in state.incidents.values():
        if incident.model == model and incident.status == "open":
            worst[incident.family] = vocabulary.worst(
                worst.get(incident.family, vocabulary.Severity.NONE), incident.severity
            )
    return [((model, family), float(severity.rank)) for family, severity in worst.items()]


def open_incidents(model: str, state: policy.PolicyState) -> int:
    return sum(1 for i in state.incidents.values() if i.model == model and i.status == "open")


@dataclasses.dataclass(frozen=True)
class Executed:
    """A request and how it ended (returned by ``execute`` for callers and tests)."""

    request: base.ActionRequest
    outcome: base.ActionOutcome


class Executor:
    def __init__(
        self,
        handlers: Mapping[base.ActionKind, base.ActionHandler],
        *,
        store: idempotency.IdempotencyStore,
        audit: audit_mod.AuditLog,
        overrides_state: Callable[[], overrides.OverrideState],
        is_leader: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        required_kinds: Iterable[base.ActionKind] = (),
        queue_size: int = 256,
        dry_run: bool = False,
        follow_up: Callable[[base.ActionRequest], None] | None = None,
        retry_policy: retry.RetryPolicy | None = None,
    ) -> None:
        self._handlers = _checked_handlers(handlers, required_kinds)
        self._store = store
        self._audit = audit
        self._overrides = overrides_state
        self._is_leader = is_leader
        self._clock = clock
        self._metrics = metrics
        self._dry_run = dry_run
        self._retry = retry_policy if retry_policy is not None else retry.RetryPolicy()
        self._queues: dict[str, queue.Queue[base.ActionRequest | None]] = {
            NOTIFY_LANE: queue.Queue(maxsize=queue_size),
            ROLLBACK_LANE: queue.Queue(maxsize=queue_size),
            REMEDIATE_LANE: queue.Queue(maxsize=queue_size),
        }
        self._threads: list[threading.Thread] = []
        # Keys queued or running: a resubmission of one of them would only come back "duplicate".
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        self._on_done: Callable[[Executed], None] | None = None
        # Where requests that follow from an outcome go (a page when a remediation gives up):
        # queued here by default; the act stage makes them durable on the actions topic first.
        self._follow_up = follow_up if follow_up is not None else (lambda request: self.submit([request]))
        if metrics is not None:
            collectors.register_gauge(
                metrics.registry,
                collectors.ACTION_QUEUE_DEPTH,
                lambda: [((lane,), float(q.qsize())) for lane, q in self._queues.items()],
            )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, on_done: Callable[[Executed], None] | None = None) -> None:
        """Start the lane workers; ``on_done`` (optional) sees every finished request."""
        if self._threads:
            return
        self._on_done = on_done
        for lane, lane_queue in self._queues.items():
            thread = threading.Thread(
                target=self._work, args=(lane_queue,), name=f"executor-{lane}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Finish what is queued (within ``timeout_s``) and stop; True when every worker ended."""
        for lane_queue in self._queues.values():
            try:
                lane_queue.put(None, timeout=timeout_s)
            except queue.Full:
                LOG.error("executor queue still full at shutdown; pending actions are left to the next start")
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = any(thread.is_alive() for thread in self._threads)
        self._threads = []
        return not alive

    # -- submit ----------------------------------------------------------------------------

    def submit(self, requests: Iterable[base.ActionRequest]) -> int:
        """Queue requests without blocking; returns how many were queued (the rest were dropped)."""
        queued = 0
        for request in requests:
            lane = _LANE_OF[request.kind]
            with self._in_flight_lock:
                if request.idempotency_key in self._in_flight:
                    continue
                self._in_flight.add(request.idempotency_key)
            try:
                self._queues[lane].put_nowait(request)
                queued += 1
            except queue.Full:
                self._forget(request)
                self._drop(request)
        return queued

    def _forget(self, request: base.ActionRequest) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(request.idempotency_key)

    def _drop(self, request: base.ActionRequest) -> None:
        LOG.error(
            "action queue full: %s %s dropped (audited). Actions are slower than decisions: check "
            "the action targets, or raise the queue size",
            request.kind.value,
            request.idempotency_key,
        )
        if self._metrics is not None:
            self._metrics.actions_dropped.labels(kind=request.kind.value).inc()
        self._audit.record(
            audit_mod.ACTION_DROPPED,
            idempotency_key=request.idempotency_key,
            request=idempotency.request_to_json(request),
            outcome={"status": "dropped", "message": "executor queue full"},
        )

    def _work(self, lane_queue: queue.Queue[base.ActionRequest | None]) -> None:
        while True:
            request = lane_queue.get()
            if request is None:
                return
            try:
                executed = self.execute(request)
            finally:
                self._forget(request)
            if self._on_done is not None:
                try:
                    self._on_done(executed)
                except Exception:
                    LOG.exception("executor on_done callback failed")

    # -- execute ---------------------------------------------------------------------------

    def resubmit_pending(self) -> int:
        """Queue every begun-but-unfinished key again (a ticker calls this; it never blocks)."""
        requests = []
        for record in self._store.pending():
            try:
                requests.append(idempotency.request_from_json(record.request))
            except (KeyError, ValueError) as exc:
                LOG.error("cannot resume %s: unreadable stored request (%s)", record.key, exc)
        return self.submit(requests)

    def resume_pending(self) -> list[Executed]:
        """Hand every begun-but-unfinished key back to its handler now, in this thread (start-up)."""
        done = []
        for record in self._store.pending():
            try:
                request = idempotency.request_from_json(record.request)
            except (KeyError, ValueError) as exc:
                LOG.error("cannot resume %s: unreadable stored request (%s)", record.key, exc)
                continue
            done.append(self.execute(request))
        return done

    def execute(self, request: base.ActionRequest) -> Executed:
        """Run one request now, in this thread, with every guard. Never raises."""
        try:
            return self._execute(request)
        except Exception as exc:  # the store or the audit file failing must still not kill a worker
            LOG.exception("executor failed on %s", request.idempotency_key)
            return Executed(
                request, base.ActionOutcome(base.OutcomeStatus.FAILED, f"executor error: {exc!r}")
            )

    def _execute(self, request: base.ActionRequest) -> Executed:
        now = self._clock()
        state = self._overrides()
        if not self._is_leader():
            return self._finish_unrecorded(
                request, _skipped("not_leader", "not the leader; the leader acts"), state
            )
        skip = state.skip_reason(request, now)
        if self._dry_run and skip is None:
            skip = overrides.Skip("dry_run", {"mode": "replay/dry-run executor"})
        if skip is not None:
            return self._finish_unrecorded(request, self._skip_outcome(request, skip), state)
        if request.kind is base.ActionKind.LOG:
            return self._run_recorded(
                request, state, lambda r: base.ActionOutcome(base.OutcomeStatus.SUCCEEDED)
            )
        handler = self._handlers.get(request.kind)
        if handler is None:
            valid = ", ".join(sorted(k.value for k in self._handlers)) or "none"
            outcome = base.ActionOutcome(
                base.OutcomeStatus.FAILED, f"no handler for {request.kind.value!r}; registered: {valid}"
            )
            return self._finish_unrecorded(request, outcome, state)
        return self._run_recorded(request, state, lambda r: self._handle_as_leader(r, handler))

    def _handle_as_leader(
        self, request: base.ActionRequest, handler: base.ActionHandler
    ) -> base.ActionOutcome:
        # The lease may have lapsed while the request waited in its lane or was journaled: asked
        # again right before the side effect. Not final, so the key stays pending for the leader.
        if not self._is_leader():
            return base.ActionOutcome(
                base.OutcomeStatus.IN_PROGRESS,
                "lease lost right before acting; the leader resumes it",
                {"reason": "not_leader"},
            )
        return handler.handle(request, dry_run=False)

    def _run_recorded(
        self,
        request: base.ActionRequest,
        state: overrides.OverrideState,
        run: Callable[[base.ActionRequest], base.ActionOutcome],
    ) -> Executed:
        known = self._store.get(request.idempotency_key)
        wait_until = retry.waiting_until(known.outcome if known is not None else None, self._clock())
        if wait_until is not None:
            # Backing off after a retryable failure: nothing runs, nothing is recorded yet.
            return Executed(
                request,
                base.ActionOutcome(
                    base.OutcomeStatus.IN_PROGRESS,
                    "waiting to try again",
                    {"reason": "retry_wait", retry.RETRY_AT: wait_until},
                ),
            )
        previous = self._store.begin(request.idempotency_key, request)
        if previous is not None and previous.done:
            outcome = previous.outcome_object() or base.ActionOutcome(base.OutcomeStatus.SKIPPED)
            duplicate = base.ActionOutcome(
                outcome.status, outcome.message, {**outcome.details, "duplicate": True}
            )
            self._record(request, duplicate, state, duplicate=True)
            return Executed(request, duplicate)
        if previous is not None:
            request = dataclasses.replace(
                request, params={**request.params, "resume": True, "previous_attempts": previous.attempts}
            )
        try:
            outcome = run(request)
        except Exception as exc:
            LOG.exception("%s handler failed on %s", request.kind.value, request.idempotency_key)
            outcome = base.ActionOutcome(
                base.OutcomeStatus.FAILED,
                f"handler raised {errors.describe(exc)}",
                {"exception": type(exc).__name__},
            )
        if not isinstance(outcome, base.ActionOutcome):
            outcome = base.ActionOutcome(
                base.OutcomeStatus.FAILED, f"handler returned {type(outcome).__name__}, not an ActionOutcome"
            )
        outcome = self._retry.judge(outcome, _retry_attempt(previous), self._clock())
        self._store.finish(request.idempotency_key, outcome)
        self._record(request, outcome, state)
        self._page_if_recommended(request, outcome)
        return Executed(request, outcome)

    def _page_if_recommended(self, request: base.ActionRequest, outcome: base.ActionOutcome) -> None:
        # A remediation that refuses to act (circuit open, no healthy version) asks for a human
        # rather than trying something else on its own.
        if outcome.details.get("recommendation") != "page" or request.kind is base.ActionKind.PAGE:
            return
        page = base.ActionRequest(
            kind=base.ActionKind.PAGE,
            model_name=request.model_name,
            idempotency_key=f"{request.idempotency_key}/page",
            incident_id=request.incident_id,
            severity="critical",
            reason=f"automatic {request.kind.value} needs a human: {outcome.message}",
            model_version=request.model_version,
            params={
                "event": "trigger",
                "title": f"[critical] {request.model_name}: automatic {request.kind.value} needs a human",
                "summary": f"{request.reason}. The {request.kind.value} handler said: {outcome.message}",
                "action": f"{request.kind.value} refused ({outcome.details.get('reason', 'see audit log')})",
                "family": request.params.get("family", "*"),
                "detectors": list(request.params.get("detectors", ())),
                "features": list(request.params.get("features", ())),
            },
        )
        self._follow_up(page)

    def _skip_outcome(self, request: base.ActionRequest, skip: overrides.Skip) -> base.ActionOutcome:
        details: dict[str, Any] = {"override": skip.reason, "entry": dict(skip.entry)}
        if skip.reason == "dry_run":
            handler = self._handlers.get(request.kind)
            if handler is not None:
                try:
                    intention = handler.handle(request, dry_run=True)
                    details["would"] = {"status": intention.status.value, "message": intention.message}
                except Exception as exc:
                    details["would"] = {"status": "failed", "message": errors.describe(exc)}
        return base.ActionOutcome(base.OutcomeStatus.SKIPPED, skip.reason, details)

    def _finish_unrecorded(
        self, request: base.ActionRequest, outcome: base.ActionOutcome, state: overrides.OverrideState
    ) -> Executed:
        # Skipped requests leave no idempotency record: once the override ends, or on the leader,
        # the same key may still run.
        self._record(request, outcome, state)
        return Executed(request, outcome)

    def _record(
        self,
        request: base.ActionRequest,
        outcome: base.ActionOutcome,
        state: overrides.OverrideState,
        *,
        duplicate: bool = False,
    ) -> None:
        now = self._clock()
        self._audit.record(
            audit_mod.ACTION,
            idempotency_key=request.idempotency_key,
            incident_id=request.incident_id,
            request=idempotency.request_to_json(request),
            outcome=idempotency.outcome_to_json(outcome),
            overrides=state.summary(now),
            duplicate=duplicate,
        )
        if self._metrics is not None:
            self._metrics.actions.labels(kind=request.kind.value, status=outcome.status.value).inc()


def _retry_attempt(previous: idempotency.IdempotencyRecord | None) -> int:
    """Which try of a retryable failure this is: 1, or one more than the journaled wait's."""
    details = (previous.outcome or {}).get("details") or {} if previous is not None else {}
    last = details.get("attempt") if retry.RETRY_AT in details else None
    return int(last) + 1 if isinstance(last, int) else 1


def _skipped(reason: str, message: str) -> base.ActionOutcome:
    return base.ActionOutcome(base.OutcomeStatus.SKIPPED, message, {"reason": reason})


def _checked_handlers(
    handlers: Mapping[base.ActionKind, base.ActionHandler], required: Iterable[base.ActionKind]
) -> dict[base.ActionKind, base.ActionHandler]:
    checked: dict[base.ActionKind, base.ActionHandler] = {}
    for kind, handler in handlers.items():
        if not isinstance(kind, base.ActionKind):
            valid = ", ".join(k.value for k in base.ActionKind)
            raise ExecutorError(f"handler registry key {kind!r} is not an ActionKind; valid kinds: {valid}")
        handler_kind = getattr(handler, "kind", None)
        # An alert handler may serve ALERT, PAGE and RESOLVE: it declares one kind, or a set in `kinds`.
        served = set(getattr(handler, "kinds", ())) | (
            {handler_kind} if isinstance(handler_kind, base.ActionKind) else set()
        )
        if served and kind not in served:
            raise ExecutorError(
                f"handler {type(handler).__name__} is registered for {kind.value!r} but declares "
                f"{sorted(k.value for k in served) or 'no kind'}; register it under its own kind"
            )
        checked[kind] = handler
    missing = sorted(k.value for k in set(required) - set(checked) - {base.ActionKind.LOG})
    if missing:
        registered = ", ".join(sorted(k.value for k in checked)) or "none"
        raise ExecutorError(
            f"the policy can ask for {', '.join(missing)} but no handler is registered for it "
            f"(registered: {registered}); register one (a dry-run handler is fine) "
            "or remove it from the plans"
        )
    return checked


def audit_decision(
    log: audit_mod.AuditLog, decision: policy.Decision, window: Mapping[str, Any] | None = None
) -> None:
    """One ``decision`` audit line with the inputs, rule fired, overrides in force and the window."""
    if window is None:
        log.record(audit_mod.DECISION, **decision.to_json())
    else:
        log.record(audit_mod.DECISION, **decision.to_json(), window=dict(window))

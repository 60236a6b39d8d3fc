"""The composition root: builds every part from the settings and runs the sidecar.

Everything with a lifetime (threads, servers, files) is created here and handed to the
supervisor, which starts the parts in order and stops them in reverse; the parts themselves
take their collaborators (and their own settings group) as arguments.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import prometheus_client

from actions import base as actions_base
from actions import targets
from actions.alerts import handler as alert_handler
from agent import overrides, policy
from agent import settings as settings_mod
from agent.ingest import parsing
from agent.observability import audit as audit_mod
from agent.observability import detector_results, gpu
from agent.pipeline import engine as engine_mod
from agent.pipeline import reference_files
from agent.policy import decider as decider_mod
from agent.policy import follow_up
from agent.respond import canary_feed as canary_feed_mod
from agent.respond import executor, health, idempotency, remediation
from agent.runtime import audit_topic, checkpoint, leader, log_format, process, sidecar, supervisor
from agent.runtime import http as http_mod

log = logging.getLogger(__name__)

IDEMPOTENCY_FILE = "actions.jsonl"
# How often the loop runs the policy with no results, so forced actions and expiries apply
# without waiting for the next window to close.
POLICY_TICK_S = 2.0


class Agent:
    """Every long-lived part of a running agent, wired together."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        *,
        metrics_registry: prometheus_client.CollectorRegistry,
        clock: Callable[[], float] = time.time,
        on_evaluation: sidecar.EvaluationHook | None = None,
        on_action: Callable[[executor.Executed], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics_registry = metrics_registry
        self.clock = clock
        self.on_evaluation_hook = on_evaluation
        self.on_action = on_action
        self.supervisor = supervisor.Supervisor()
        state_dir = settings.runtime.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._audit_producer = audit_topic.audit_producer(settings.kafka, settings.audit)
        self.audit = audit_mod.AuditLog(
            settings.audit.path,
            sink=self._audit_producer.send if self._audit_producer is not None else None,
            clock=clock,
            fsync_every_entry=settings.audit.fsync_every_entry,
        )
        self.overrides = overrides.OverrideWatcher(
            settings.overrides.path,
            audit=self.audit,
            clock=clock,
            interval_s=settings.overrides.reload_interval_s,
            registry=metrics_registry,
        )
        self.policy_config = policy.load_policy(settings.policy.path, model_name=settings.runtime.model_name)
        self.decider = decider_mod.PolicyDecider(self.policy_config, lambda: self.overrides.state)
        api_client = targets.api_client_from(settings.target) if settings.leader_election.enabled else None
        self.elector = leader.build_elector(settings.leader_election, api_client)
        alert_handlers: dict[actions_base.ActionKind, actions_base.ActionHandler] = dict(
            alert_handler.build_handlers(settings.alerting, registry=metrics_registry)
        )
        # The canary reports promotions and rollbacks through the same alert sinks.
        self.remediation = remediation.build_remediation(
            settings, clock=clock, alert_handler=alert_handlers[actions_base.ActionKind.ALERT]
        )
        self.executor_metrics = executor.Metrics(metrics_registry)
        self.executor_metrics.watch_policy(self.policy_config.model_name, lambda: self.decider.state)
        self.executor_metrics.watch_overrides(lambda: self.overrides.state, clock)
        self.executor = executor.Executor(
            remediation.build_handlers(self.policy_config, alert_handlers, self.remediation),
            store=idempotency.FileIdempotencyStore(state_dir / IDEMPOTENCY_FILE, clock=clock),
            audit=self.audit,
            overrides_state=lambda: self.overrides.state,
            is_leader=self.elector.is_leader,
            clock=clock,
            metrics=self.executor_metrics,
            required_kinds=policy.action_kinds(self.policy_config),
        )
        self.detector_metrics = detector_results.DetectorMetrics(metrics_registry)
        gpu.register(metrics_registry, settings.gpu)
        restored = checkpoint.restore(state_dir)
        if restored is not None:
            engine = restored.engine
            engine.attach(self.decider)
            self.decider.state = policy.PolicyState.from_json(restored.policy_state)
        else:
            parser = parsing.RecordParser(settings.mapping, settings.kafka.max_message_bytes)
            reference = reference_files.load_reference(
                settings.reference, settings.registry.tracking_uri, parser
            )
            engine = engine_mod.build(settings, decide=self.decider, clock=clock, reference_records=reference)
        self.sidecar = sidecar.Sidecar(
            kafka=settings.kafka,
            mapping=settings.mapping,
            kserve_settings=settings.kserve,
            runtime=settings.runtime,
            engine=engine,
            metrics_registry=metrics_registry,
            on_evaluation=self.on_evaluation,
            on_durable=self.on_durable,
            policy_state=self._policy_state_json,
            start_index=restored.index if restored is not None else 0,
        )
        if self.remediation.training is not None:
            engine.on_joined = self.remediation.training.add
        self.canary_feed = (
            canary_feed_mod.CanaryFeed(
                self.remediation.canary,
                overrides_state=lambda: self.overrides.state,
                is_leader=self.elector.is_leader,
                clock=clock,
                audit=self.audit,
            )
            if self.remediation.canary is not None
            else None
        )
        self.health_recorder = health.HealthRecorder(
            self.remediation.registry,
            is_leader=self.elector.is_leader,
            labels_flow=settings.kafka.labels_topic is not None,
        )
        self.health: http_mod.HealthServer = sidecar.health_server(
            settings.http, self.sidecar, metrics_registry
        )
        self._last_policy_tick = 0.0
        self._supervise()

    def _supervise(self) -> None:
        """Every background part, in start order; the supervisor stops them in reverse."""
        add = self.supervisor.add
        add("audit-log", stop=self._close_audit)
        add("health-server", start=self.health.start, stop=self.health.stop)
        add("overrides", start=self.overrides.poll)
        # The executor stops before the elector: queued actions still see their lease.
        add("leader-elector", start=self.elector.run, stop=self.elector.stop)
        add("health-recorder", start=self.health_recorder.start, stop=self.health_recorder.stop)
        if self.canary_feed is not None:
            add("canary-ticker", start=self.canary_feed.start, stop=self.canary_feed.stop)
        add(
            "executor",
            start=self._start_executor,
            stop=lambda: self.executor.stop(timeout_s=max(1.0, self.settings.runtime.drain_timeout_s / 2)),
        )
        # Drained first on stop: the last batch is made durable while everything else still runs.
        add("sidecar", stop=self.sidecar.drain)

    def _start_executor(self) -> None:
        self.executor.start(on_done=self._action_done)
        self.executor.resume_pending()

    def _close_audit(self) -> None:
        self.audit.close()
        if self._audit_producer is not None:
            self._audit_producer.close()

    def _policy_state_json(self) -> dict[str, object]:
        return self.decider.state.to_json()

    def on_evaluation(self, evaluation: engine_mod.Evaluation) -> None:
        self.detector_metrics.observe(evaluation.results)
        if self.canary_feed is not None:
            self.canary_feed.observe(evaluation)
        decision = evaluation.decision
        if isinstance(decision, policy.Decision):
            self.submit(decision)
            self.health_recorder.observe(evaluation, decision)
        if self.on_evaluation_hook is not None:
            self.on_evaluation_hook(evaluation)

    def submit(self, decision: policy.Decision) -> None:
        executor.audit_decision(self.audit, decision)
        if decision.actions:
            self.executor.submit(decision.actions)

    def _action_done(self, done: executor.Executed) -> None:
        next_request = follow_up.canary_request(done.request, done.outcome)
        if next_request is not None:
            self.executor.submit([next_request])
        if self.on_action is not None:
            self.on_action(done)

    def on_durable(self) -> None:
        self.audit.flush()

    def tick(self) -> None:
        """Work that must happen even when no window closes."""
        now = self.clock()
        self.overrides.maybe_poll()
        if now - self._last_policy_tick >= POLICY_TICK_S:
            self._last_policy_tick = now
            self.submit(self.decider([], now))
            self.executor.resubmit_pending()
        for evaluation in self.sidecar.engine.tick():
            self.on_evaluation(evaluation)

    def start(self) -> None:
        self.supervisor.start_all()
        log.info("drift-agent started; metrics on %s/metrics", self.health.url)

    def loop(self) -> None:
        while not self.sidecar.stop_requested.is_set():
            self.sidecar.step()
            self.tick()

    def stop(self) -> None:
        self.supervisor.stop_all()


def run(settings: settings_mod.AgentSettings) -> int:
    log_format.configure_logging(settings.logging)
    metrics_registry = prometheus_client.CollectorRegistry()
    try:
        agent = Agent(settings, metrics_registry=metrics_registry)
    except (settings_mod.ConfigError, policy.PolicyError, overrides.OverrideError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    process.install_signal_handlers(agent.sidecar.stop_requested, settings.runtime.drain_timeout_s)
    agent.start()
    process.tune_gc()
    try:
        agent.loop()
    finally:
        agent.stop()
    return 0

"""The composition root: builds every part from the settings and runs the agent.

Everything with a lifetime (threads, servers, files, Kafka clients) is created here and handed
to the supervisor, which starts the parts in order and stops them in reverse; the parts
themselves take their collaborators (and their own settings group) as arguments.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import kafka
import prometheus_client

from actions import base as actions_base
from actions import targets
from actions.alerts import handler as alert_handler
from agent import overrides, policy
from agent import settings as settings_mod
from agent.evaluate import model as model_mod
from agent.evaluate import preflight
from agent.ingest import connection, kserve, parsing, producers, records, worker
from agent.observability import audit as audit_mod
from agent.observability import collectors, detector_failures, detector_results, gpu
from agent.observability import metrics as metrics_mod
from agent.pipeline import engine as engine_mod
from agent.pipeline import reference_files, windows
from agent.policy import follow_up
from agent.respond import canary_feed as canary_feed_mod
from agent.respond import executor, health, idempotency, remediation, retry
from agent.runtime import (
    act_stage,
    audit_topic,
    canary_sharing,
    evaluate_stage,
    heartbeat,
    ingest_stage,
    leader,
    log_format,
    process,
    sidecar,
    supervisor,
    table,
    topics,
    training_sharing,
)
from agent.runtime import http as http_mod
from agent.settings import budget

log = logging.getLogger(__name__)

# How often the loop runs the policy with no results, so forced actions and expiries apply
# without waiting for the next window to close.
POLICY_TICK_S = 2.0

EvaluationHook = Callable[[engine_mod.Evaluation], None]


class Stages:
    """The three stages of one agent, sharing one producer (acks=all)."""

    def __init__(self, agent: Agent, internal: topics.InternalTopics, counts: dict[str, int]) -> None:
        settings = agent.settings
        self.producer = kafka.KafkaProducer(
            **connection.connection_config(settings.kafka),
            acks="all",
            linger_ms=5,
            max_request_size=16 * 1024 * 1024,
        )
        # kafka.client librdkafka: fragments, one message per few hundred records, on their own.
        self.fragment_producer = producers.fragment_producer(settings.kafka, self.producer)
        partitions = counts[internal.fragments]
        metrics = agent.metrics
        self.ingest = ingest_stage.IngestStage(
            kafka_settings=settings.kafka,
            streams=settings.streams,
            fragments_topic=internal.fragments,
            fragment_partitions=partitions,
            ingest=worker.IngestWorker(
                parser=agent.record_parser,
                labels_topic=settings.kafka.labels_topic,
                join=worker.join_from(
                    settings.labels.ttl_s,
                    settings.labels.max_pending,
                    settings.kafka.labels_topic,
                    agent.clock,
                    max_bytes=settings.memory.bytes_for("label_join"),
                    metrics=metrics,
                ),
                producer=agent.identity,
                max_fragment_records=settings.streams.max_fragment_records,
                kserve_adapter=_kserve_adapter(settings),
                wall_clock=agent.clock,
                max_future_skew_s=settings.kafka.max_future_skew_s,
                fragment_format=settings.streams.fragment_format,
            ),
            producer=self.fragment_producer,
            metrics=metrics,
            dead_letter_bytes=settings.memory.bytes_for("dead_letters"),
        )
        self.evaluate = evaluate_stage.EvaluateStage(
            streams=settings.streams,
            fragments_topic=internal.fragments,
            actions_topic=internal.actions,
            partitions=partitions,
            factory=agent.factory,
            state=table.CompactedTable(settings.kafka, internal.state, self.producer),
            producer=self.producer,
            metrics=metrics,
            on_evaluation=agent.on_evaluation,
            on_decision=agent.on_decision,
        )
        journal = idempotency.TableIdempotencyStore(
            table.CompactedTable(settings.kafka, internal.journal, self.producer), clock=agent.clock
        )
        self.act = act_stage.ActStage(
            actions_topic=internal.actions,
            producer=self.producer,
            elector=agent.elector,
            load_journal=journal.load,
        )
        self.act.attach(agent.build_executor(journal, self.act))
        self.act.follow_ups.append(lambda done: follow_up.canary_request(done.request, done.outcome))
        # Closed windows for the canary and label-joined rows for a retrain: both run on the
        # Lease holder, not where windows close and labels meet.
        self.windows = (
            canary_sharing.WindowPublisher(self.producer, internal.windows)
            if agent.canary_feed is not None
            else None
        )
        self.training_rows = (
            training_sharing.TrainingRowPublisher(self.producer, internal.training)
            if agent.training_follower is not None
            else None
        )


def _kserve_adapter(settings: settings_mod.AgentSettings) -> kserve.KServeAdapter | None:
    if not settings.kserve.enabled:
        return None
    return kserve.KServeAdapter.from_settings(settings.kserve, max_bytes=settings.memory.bytes_for("kserve"))


class Agent:
    """Every long-lived part of a running agent, wired together."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        *,
        metrics_registry: prometheus_client.CollectorRegistry,
        clock: Callable[[], float] = time.time,
        on_evaluation: EvaluationHook | None = None,
        on_action: Callable[[executor.Executed], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics_registry = metrics_registry
        self.clock = clock
        self.on_evaluation_hook = on_evaluation
        self.on_action = on_action
        self.supervisor = supervisor.Supervisor()
        settings.runtime.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = metrics_mod.AgentMetrics(metrics_registry)
        self._audit_producer = audit_topic.audit_producer(
            settings.kafka, settings.audit, metrics_registry, buffer_bytes=settings.memory.bytes_for("audit")
        )
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
        # Fails at start on a bad policy file; each model's copy is made by the factory.
        self.policy_config = policy.load_policy(settings.policy.path, model_name=settings.runtime.model_name)
        api_client = targets.api_client_from(settings.target) if settings.leader_election.enabled else None
        self.heartbeats = heartbeat.Heartbeats()
        self.elector = leader.build_elector(
            settings.leader_election,
            api_client,
            heartbeats=self.heartbeats,
            stall_after_s=settings.runtime.liveness_stall_s,
        )
        self.identity = getattr(self.elector, "identity", None) or leader.default_identity()
        self._alert_handlers: dict[actions_base.ActionKind, actions_base.ActionHandler] = dict(
            alert_handler.build_handlers(settings.alerting, registry=metrics_registry)
        )
        internal = topics.InternalTopics.of(settings.streams)
        self._canary_stores: list[canary_sharing.TableCanaryStore] = []

        def canary_store(model: str) -> canary_sharing.TableCanaryStore:
            store = canary_sharing.TableCanaryStore(
                settings.kafka, internal.canary, model, is_leader=self.elector.is_leader
            )
            self._canary_stores.append(store)
            return store

        # The canary reports promotions and rollbacks through the same alert sinks.
        self.remediation = remediation.build_remediation(
            settings,
            clock=clock,
            canary_store=canary_store,
            alert_handler=self._alert_handlers[actions_base.ActionKind.ALERT],
        )
        self.executor_metrics = executor.Metrics(metrics_registry)
        self.executor_metrics.watch_overrides(lambda: self.overrides.state, clock)
        self.executor_metrics.watch_policy(lambda: {e.model: e.decider.state for e in self.evaluators()})
        self.executor: executor.Executor | None = None
        self.detector_metrics = detector_results.DetectorMetrics(metrics_registry)
        self.detector_failures = detector_failures.FailureReporter(metrics_registry, self.audit)
        gpu.register(metrics_registry, settings.gpu)
        parser = parsing.RecordParser(settings.mapping, settings.kafka.max_message_bytes)
        reference = reference_files.load_reference(settings.reference, settings.registry.tracking_uri, parser)
        # Records are held to the vector shapes the reference fixed (wrong dimension: dead-lettered).
        self.record_parser = parser.with_shapes(reference.shapes) if reference is not None else parser
        budget.check_reference_records(
            settings,
            reference.records if reference is not None else None,
            time_window_records=windows.DEFAULT_MAX_TIME_WINDOW_RECORDS,
        )
        training = self.remediation.training
        self.training_follower = (
            training_sharing.training_follower(
                settings.kafka,
                internal.training,
                training,
                max_rows=settings.retrain.strategy.max_rows,
                is_leader=self.elector.is_leader,
            )
            if training is not None and settings.retrain.enabled
            else None
        )
        self.factory = model_mod.EvaluatorFactory(
            settings,
            reference_records=reference.records if reference is not None else None,
            reference_labels=reference.labels if reference is not None else None,
            overrides_state=lambda: self.overrides.state,
            clock=clock,
            on_joined=self._on_joined if self.training_follower is not None else None,
        )
        self.canary_feed = (
            canary_feed_mod.CanaryFeed(
                self.remediation.canary,
                overrides_state=lambda: self.overrides.state,
                is_leader=self.elector.is_leader,
                clock=clock,
                audit=self.audit,
                labels_expected=settings.kafka.labels_topic is not None,
            )
            if self.remediation.canary is not None
            else None
        )
        self.canary_windows = (
            canary_sharing.window_follower(
                settings.kafka,
                internal.windows,
                lambda model, window, labelled: feed.observe(window, labelled=labelled),
            )
            if (feed := self.canary_feed) is not None
            else None
        )
        self.health_recorder = health.HealthRecorder(
            self.remediation.registry,
            is_leader=lambda: True,  # one evaluator per model: the owner records its health
            labels_flow=settings.kafka.labels_topic is not None,
        )
        self.sidecar: sidecar.Sidecar[Stages] = sidecar.Sidecar(
            kafka_settings=settings.kafka,
            streams=settings.streams,
            runtime=settings.runtime,
            metrics=self.metrics,
            build=lambda internal, counts: Stages(self, internal, counts),
            heartbeats=self.heartbeats,
        )
        self._window_fill: tuple[collectors.Sample, ...] = ()
        self._windows_evicted: tuple[collectors.Sample, ...] = ()
        collectors.register_gauge(metrics_registry, collectors.WINDOW_FILL, lambda: self._window_fill)
        collectors.register_gauge(metrics_registry, collectors.WINDOWS_EVICTED, lambda: self._windows_evicted)
        collectors.register_gauge(metrics_registry, collectors.READY, collectors.flag(self.sidecar.ready))
        self.health = http_mod.HealthServer(
            settings.http.host,
            settings.http.port,
            metrics_registry,
            readiness=self.sidecar.ready,
            liveness=self.heartbeats.alive,
            liveness_reason=self.heartbeats.reason,
            readiness_reason=self.sidecar.readiness_reason,
            detail=tuple(preflight.summary(settings)),
        )
        self._last_policy_tick = 0.0
        self._supervise()

    def build_executor(
        self, journal: idempotency.IdempotencyStore, act: act_stage.ActStage
    ) -> executor.Executor:
        handlers = remediation.build_handlers(self.policy_config, self._alert_handlers, self.remediation)
        self.executor = executor.Executor(
            handlers,
            store=journal,
            audit=self.audit,
            overrides_state=lambda: self.overrides.state,
            is_leader=self.elector.is_leader,
            clock=self.clock,
            metrics=self.executor_metrics,
            required_kinds=policy.action_kinds(self.policy_config),
            follow_up=act.produce,
            retry_policy=retry.RetryPolicy(
                max_attempts=self.settings.executor.retry_max_attempts,
                initial_backoff_s=self.settings.executor.retry_initial_backoff_s,
                max_backoff_s=self.settings.executor.retry_max_backoff_s,
            ),
        )

        def done(executed: executor.Executed) -> None:
            act.done(executed)
            if self.on_action is not None:
                self.on_action(executed)

        self.executor.start(on_done=done)
        return self.executor

    def _supervise(self) -> None:
        """Every background part, in start order; the supervisor stops them in reverse."""
        add = self.supervisor.add
        add("audit-log", stop=self._close_audit)
        add("health-server", start=self.health.start, stop=self.health.stop)
        add("overrides", start=self.overrides.poll)
        # The act stage starts the elector when it owns the actions partition; stopped last but two.
        add("leader-elector", stop=self.elector.stop)
        add("health-recorder", start=self.health_recorder.start, stop=self.health_recorder.stop)
        if self.canary_feed is not None:
            add("canary-ticker", start=self.canary_feed.start, stop=self.canary_feed.stop)
        if self.canary_windows is not None:
            add("canary-windows", start=self.canary_windows.start, stop=self.canary_windows.stop)
        if self.training_follower is not None:
            add("training-rows", start=self.training_follower.start, stop=self.training_follower.stop)
        add("canary-state", stop=self._close_canary_stores)
        # Drained first on stop: fragments, state and actions made durable, the executor given
        # what is left of the bound to finish, then the last commits (the elector still runs).
        add("sidecar", stop=self._drain_sidecar)

    def _drain_sidecar(self) -> None:
        self.sidecar.drain(finish_actions=self._stop_executor)
        stages = self.sidecar.stages
        if stages is not None:
            producers.close_fragment_producer(stages.fragment_producer, timeout=5)

    def _close_canary_stores(self) -> None:
        for store in self._canary_stores:
            store.close()

    def _stop_executor(self, timeout_s: float) -> None:
        if self.executor is not None:
            self.executor.stop(timeout_s=timeout_s)

    def _close_audit(self) -> None:
        self.audit.close()
        if self._audit_producer is not None:
            self._audit_producer.close()

    # -- what the demo, the tests and /readyz look at ------------------------------------------------

    def evaluators(self) -> list[model_mod.ModelEvaluator]:
        """The models this agent evaluates now (the owner of their fragments partitions)."""
        stages = self.sidecar.stages
        return list(stages.evaluate.evaluators.values()) if stages is not None else []

    @property
    def reference_ready(self) -> bool:
        """Some model this agent evaluates has its reference (loaded, or its first N collected)."""
        return any(evaluator.engine.reference_ready for evaluator in self.evaluators())

    @property
    def records_ingested(self) -> int:
        stages = self.sidecar.stages
        return stages.ingest.records if stages is not None else 0

    def request(self, request: actions_base.ActionRequest) -> None:
        """Ask for an action as the policy would: durable on the actions topic, run by the leader."""
        stages = self.sidecar.stages
        if stages is None:
            raise RuntimeError("the agent has not reached Kafka yet; no action can be queued")
        stages.act.produce(request)
        stages.producer.flush(timeout=30)

    # -- hooks of the evaluate stage ---------------------------------------------------------------

    def on_evaluation(self, model: str, evaluation: engine_mod.Evaluation) -> None:
        self.detector_metrics.observe(evaluation.results)
        if evaluation.failed:
            self.detector_failures.report(
                model,
                evaluation.failed,
                model_version=evaluation.window.model_version,
                labelled=evaluation.labelled,
            )
        stages = self.sidecar.stages
        if not evaluation.at_record:
            self.metrics.window_closed(evaluation.window.model_version or "")
        if not evaluation.at_record and stages is not None and stages.windows is not None:
            stages.windows.publish(model, evaluation.window, labelled=evaluation.labelled)
        decision = evaluation.decision
        if isinstance(decision, policy.Decision):
            self.health_recorder.observe(evaluation, decision)
        if self.on_evaluation_hook is not None:
            self.on_evaluation_hook(evaluation)

    def _on_joined(self, record: records.PredictionRecord, label: engine_mod.Label) -> None:
        stages = self.sidecar.stages
        if stages is not None and stages.training_rows is not None:
            stages.training_rows.add(record, label)

    def on_decision(self, model: str, decision: policy.Decision, window: Mapping[str, Any] | None) -> None:
        executor.audit_decision(self.audit, decision, window)

    def tick(self) -> None:
        """Work that must happen even when no window closes."""
        now = self.clock()
        self.overrides.maybe_poll()
        stages = self.sidecar.stages
        if stages is None:
            return
        if now - self._last_policy_tick >= POLICY_TICK_S:
            self._last_policy_tick = now
            stages.evaluate.tick(now)
            if stages.training_rows is not None:
                stages.training_rows.flush()
        self._window_fill = tuple(
            sample
            for evaluator in stages.evaluate.evaluators.values()
            for sample in metrics_mod.window_fill_samples(
                evaluator.engine.window_fill(), evaluator.engine.window_size
            )
        )
        self._windows_evicted = tuple(
            ((model,), float(evaluator.engine.evicted_windows))
            for model, evaluator in stages.evaluate.evaluators.items()
        )

    def start(self) -> None:
        self.supervisor.start_all()
        log.info(
            "drift-agent started; metrics on %s/metrics; %s",
            self.health.url,
            "; ".join(preflight.summary(self.settings)),
        )

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


__all__ = ["Agent", "Stages", "run"]

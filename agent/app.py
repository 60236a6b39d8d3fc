"""The composition root: builds every part from the settings and runs the sidecar.

Everything with a lifetime (threads, servers, files) is created here and closed here, in the
reverse order; the parts themselves take their collaborators as arguments.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Callable

import prometheus_client

from actions import base as actions_base
from actions import null as null_actions
from actions import registry as registry_mod
from actions import rollback as rollback_mod
from actions import targets
from actions.alerts import handler as alert_handler
from actions.canary import controller as canary_controller
from actions.canary import handler as canary_handler
from actions.retrain import handler as retrain_handler
from agent import audit as audit_mod
from agent import (
    detector_metrics,
    executor,
    idempotency,
    leader,
    overrides,
    policy,
    policy_glue,
    records,
    reference,
    remediation,
    runner,
    source,
)
from agent import engine as engine_mod
from agent import http as http_mod
from agent import settings as settings_mod
from detectors import registry as detector_registry

log = logging.getLogger(__name__)

IDEMPOTENCY_FILE = "actions.jsonl"
# How often the loop runs the policy with no results, so forced actions and expiries apply
# without waiting for the next window to close.
POLICY_TICK_S = 2.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(config: settings_mod.LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)


@dataclasses.dataclass
class Remediation:
    """The remediation handlers and what they share (None where not configured)."""

    handlers: dict[actions_base.ActionKind, actions_base.ActionHandler]
    model_registry: registry_mod.ModelRegistry | None
    training: remediation.TrainingBuffer | None = None
    canary: canary_controller.CanaryController | None = None


def build_remediation(
    settings: settings_mod.AgentSettings,
    *,
    clock: Callable[[], float],
    alert_handler: actions_base.ActionHandler | None = None,
) -> Remediation:
    uri = settings.registry.tracking_uri
    if uri is None:
        hint = "set registry.tracking_uri (and target.*) to enable rollback, retrain and canary"
        return Remediation(
            {
                kind: null_actions.NotConfiguredHandler(kind, hint)
                for kind in (
                    actions_base.ActionKind.ROLLBACK,
                    actions_base.ActionKind.RETRAIN,
                    actions_base.ActionKind.CANARY,
                )
            },
            None,
        )
    model_name = settings.registry.registered_model_name or settings.runtime.model_name
    model_registry = registry_mod.ModelRegistry(
        uri, model_name, min_healthy_windows=settings.registry.min_healthy_windows, clock=clock
    )
    cluster = settings.target.kind != "local" or settings.retrain.runner.kind == "kubernetes"
    api_client = targets.api_client_from(settings.target) if cluster else None
    target = targets.build_target(settings.target, api_client=api_client, clock=clock)
    rollback = rollback_mod.RollbackHandler(
        model_registry,
        target,
        clock=clock,
        cooldown_s=settings.registry.cooldown_s,
        circuit_breaker_window_s=settings.registry.circuit_breaker_window_s,
        rollout_timeout_s=settings.registry.rollout_timeout_s,
    )
    training = remediation.TrainingBuffer(settings.retrain.strategy.max_rows)
    retrain = retrain_handler.RetrainHandler.from_settings(
        settings.retrain,
        model_name=model_name,
        provider=training.rows,
        registry_tracking_uri=uri,
        registered_model_name=model_name,
        api_client=api_client,
    )
    canary = canary_controller.CanaryController(
        target,
        model_registry,
        settings.canary.state_path,
        settings.canary,
        clock,
        alert_handler=alert_handler,
    )
    return Remediation(
        {
            actions_base.ActionKind.ROLLBACK: rollback,
            actions_base.ActionKind.RETRAIN: retrain,
            actions_base.ActionKind.CANARY: canary_handler.CanaryHandler(canary),
        },
        model_registry,
        training,
        canary,
    )


def build_handlers(
    policy_config: policy.PolicyConfig,
    alert_handlers: dict[actions_base.ActionKind, actions_base.ActionHandler],
    configured: Remediation,
) -> dict[actions_base.ActionKind, actions_base.ActionHandler]:
    handlers = {**alert_handlers, **configured.handlers}
    for kind in policy.action_kinds(policy_config) - set(handlers) - {actions_base.ActionKind.LOG}:
        handlers[kind] = null_actions.NotConfiguredHandler(kind, f"no handler for {kind.value} in this build")
    return handlers


def load_reference(
    settings: settings_mod.AgentSettings, parser: records.RecordParser
) -> list[records.PredictionRecord] | None:
    """Reference records from a file or MLflow; None means "collect the first N records"."""
    config = settings.reference
    if config.source == "file":
        if config.path is None:
            raise settings_mod.ConfigError("reference.path: required when reference.source is 'file'")
        return reference.load_records(config.path, parser, max_rows=config.max_rows)
    if config.source == "mlflow":
        if config.mlflow_run_id is None or settings.registry.tracking_uri is None:
            raise settings_mod.ConfigError(
                "reference.mlflow_run_id and registry.tracking_uri: both required when "
                "reference.source is 'mlflow'"
            )
        return reference.load_from_mlflow(
            config.mlflow_run_id, config.mlflow_artifact_path, settings.registry.tracking_uri, parser
        )
    return None


class AuditProducer:
    """Publishes audit lines to ``audit.kafka_topic`` (asynchronously; the JSONL file is the record)."""

    def __init__(self, settings: settings_mod.AgentSettings, topic: str) -> None:
        import kafka  # noqa: PLC0415 - only when the audit topic is configured

        self._topic = topic
        self._producer = kafka.KafkaProducer(**source.connection_config(settings.kafka), acks="all")

    def send(self, line: bytes) -> None:
        self._producer.send(self._topic, line)

    def close(self) -> None:
        self._producer.close(timeout=5)


def audit_producer(settings: settings_mod.AgentSettings) -> AuditProducer | None:
    topic = settings.audit.kafka_topic
    return AuditProducer(settings, topic) if topic else None


class Agent:
    """Every long-lived part of a running agent, wired together."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        *,
        registry: prometheus_client.CollectorRegistry,
        clock: Callable[[], float] = time.time,
        on_evaluation: runner.EvaluationHook | None = None,
        on_action: Callable[[executor.Executed], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.on_evaluation_hook = on_evaluation
        self.on_action = on_action
        state_dir = settings.runtime.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._audit_producer = audit_producer(settings)
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
            registry=registry,
        )
        self.policy_config = policy.load_policy(settings.policy.path, model_name=settings.runtime.model_name)
        self.decider = policy_glue.PolicyDecider(self.policy_config, lambda: self.overrides.state)
        api_client = targets.api_client_from(settings.target) if settings.leader_election.enabled else None
        self.elector = leader.build_elector(settings.leader_election, api_client)
        alert_handlers: dict[actions_base.ActionKind, actions_base.ActionHandler] = dict(
            alert_handler.build_handlers(settings.alerting, registry=registry)
        )
        # The canary reports promotions and rollbacks through the same alert sinks.
        self.remediation = build_remediation(
            settings, clock=clock, alert_handler=alert_handlers[actions_base.ActionKind.ALERT]
        )
        self.executor_metrics = executor.Metrics(registry)
        self.executor = executor.Executor(
            build_handlers(self.policy_config, alert_handlers, self.remediation),
            store=idempotency.FileIdempotencyStore(state_dir / IDEMPOTENCY_FILE, clock=clock),
            audit=self.audit,
            overrides_state=lambda: self.overrides.state,
            is_leader=self.elector.is_leader,
            clock=clock,
            metrics=self.executor_metrics,
            required_kinds=policy.action_kinds(self.policy_config),
        )
        self.detector_metrics = detector_metrics.DetectorMetrics(registry)
        parser = records.RecordParser(settings.mapping, settings.kafka.max_message_bytes)
        restored, start_index = runner.restore_engine(settings)
        if restored is not None:
            engine = restored
            engine.attach(self.decider)
            self.decider.state = policy.PolicyState.from_json(self._restored_policy_state())
        else:
            engine = engine_mod.Engine(
                settings,
                detectors=detector_registry.default_registry(),
                decide=self.decider,
                clock=clock,
                reference_records=load_reference(settings, parser),
            )
        self.sidecar = runner.Sidecar(
            settings,
            engine=engine,
            registry=registry,
            on_evaluation=self.on_evaluation,
            on_durable=self.on_durable,
            policy_state=self._policy_state_json,
            start_index=start_index,
        )
        if self.remediation.training is not None:
            engine.on_joined = self.remediation.training.add
        self.canary_feed = (
            remediation.CanaryFeed(
                self.remediation.canary,
                overrides_state=lambda: self.overrides.state,
                is_leader=self.elector.is_leader,
                clock=clock,
                audit=self.audit,
            )
            if self.remediation.canary is not None
            else None
        )
        self.health_recorder = HealthRecorder(self.remediation.model_registry)
        self.health: http_mod.HealthServer | None = None
        self._last_policy_tick = 0.0

    def _policy_state_json(self) -> dict[str, object]:
        return self.decider.state.to_json()

    def _restored_policy_state(self) -> dict[str, object]:
        state = runner.load_checkpoint(self.settings.runtime.state_dir / runner.CHECKPOINT_FILE)
        assert state is not None
        policy_state = state.get("policy_state", {})
        assert isinstance(policy_state, dict)
        return policy_state

    def on_evaluation(self, evaluation: engine_mod.Evaluation) -> None:
        self.detector_metrics.observe(evaluation.results)
        if self.canary_feed is not None:
            self.canary_feed.observe(evaluation)
        decision = evaluation.decision
        if isinstance(decision, policy.Decision):
            self.submit(decision)
            self._note_health(evaluation, decision)
        if self.on_evaluation_hook is not None:
            self.on_evaluation_hook(evaluation)

    def submit(self, decision: policy.Decision) -> None:
        executor.audit_decision(self.audit, decision)
        self.executor_metrics.observe_state(self.policy_config.model_name, self.decider.state)
        if decision.actions:
            self.executor.submit(decision.actions)

    def _note_health(self, evaluation: engine_mod.Evaluation, decision: policy.Decision) -> None:
        # The registry keeps no serving history; a clean window is what makes a version a
        # rollback candidate later. Registry calls are slow I/O: a recorder batches them.
        model_registry = self.remediation.model_registry
        version = evaluation.window.model_version
        if model_registry is None or version is None or decision.severity != policy.Severity.NONE:
            return
        # A drifted window whose incident is still pending (below raise_after) is not a clean one.
        if any(report.window_severity is not policy.Severity.NONE for report in decision.incidents):
            return
        # With ground truth configured, only a labelled window vouches for a version: a bad
        # release looks clean on its inputs until its labels arrive.
        if self.settings.kafka.labels_topic is not None and not evaluation.labelled:
            return
        # Only the leader writes the registry: followers would race it (and lag it, writing
        # "healthy" onto a version the leader has just rolled back).
        if not self.elector.is_leader():
            return
        self.health_recorder.note(version)

    def _action_done(self, done: executor.Executed) -> None:
        follow_up = remediation.canary_request(done.request, done.outcome)
        if follow_up is not None:
            self.executor.submit([follow_up])
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
            self.executor_metrics.observe_overrides(self.overrides.state, now)
        for evaluation in self.sidecar.engine.tick():
            self.on_evaluation(evaluation)

    def start(self) -> None:
        self.overrides.poll()
        self.executor.start(on_done=self._action_done)
        self.health_recorder.start()
        if self.canary_feed is not None:
            self.canary_feed.start()
        self.executor.resume_pending()
        self.elector.run()
        self.health = runner.start_health_server(self.settings, self.sidecar, self.registry)
        log.info("drift-agent started; metrics on %s/metrics", self.health.url)

    def loop(self) -> None:
        while not self.sidecar.stop_requested.is_set():
            self.sidecar.step()
            self.tick()

    def stop(self) -> None:
        self.sidecar.drain()
        self.executor.stop(timeout_s=max(1.0, self.settings.runtime.drain_timeout_s / 2))
        if self.canary_feed is not None:
            self.canary_feed.stop()
        self.health_recorder.stop()
        self.elector.stop()
        self.audit.close()
        if self._audit_producer is not None:
            self._audit_producer.close()
        if self.health is not None:
            self.health.stop()


class HealthRecorder:
    """Counts clean windows per version and writes them to the registry in batches, off-thread."""

    def __init__(self, model_registry: registry_mod.ModelRegistry | None, interval_s: float = 5.0) -> None:
        self._registry = model_registry
        self._interval_s = interval_s
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-recorder", daemon=True)

    def note(self, version: str) -> None:
        with self._lock:
            self._counts[version] = self._counts.get(version, 0) + 1

    def start(self) -> None:
        if self._registry is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if self._registry is None:
            return
        for version, windows in counts.items():
            try:
                self._registry.mark_healthy(version, windows=windows)
            except registry_mod.RegistryError as exc:
                log.warning("could not record version %s as healthy: %s", version, exc)


def run(settings: settings_mod.AgentSettings) -> int:
    configure_logging(settings.logging)
    registry = prometheus_client.CollectorRegistry()
    try:
        agent = Agent(settings, registry=registry)
    except (settings_mod.ConfigError, policy.PolicyError, overrides.OverrideError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    runner.install_signal_handlers(agent.sidecar)
    agent.start()
    runner.tune_gc()
    try:
        agent.loop()
    finally:
        agent.stop()
    return 0

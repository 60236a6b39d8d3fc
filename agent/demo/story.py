"""`drift-agent demo`: the whole loop on real parts, with drift injected at known points.

Embedded Tansu broker, an MLflow registry on sqlite, a simulated server with real torch models,
delayed labels, the agent itself (the same ``app.Agent`` as `drift-agent run`) with the local
deployment target, and a local receiver standing in for Slack and PagerDuty. Each scenario
injects one change, waits for the agent to act, and records the timeline.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import kafka
import prometheus_client
import yaml

import drift_logger
from actions import base as actions_base
from actions import registry as registry_mod
from actions.targets import local as local_target
from agent import app, broker, executor, policy
from agent import engine as engine_mod
from agent import settings as settings_mod
from agent.demo import receiver as receiver_mod
from agent.demo import server as server_mod
from agent.demo import ui as ui_mod
from agent.demo import workload

MODEL = "fraud-scorer"
SEED = 7
PREDICTIONS, LABELS, DEAD_LETTERS = "predictions", "labels", "predictions.dlq"
SLACK_ENV, PAGERDUTY_ENV = "DRIFT_DEMO_SLACK_WEBHOOK_URL", "DRIFT_DEMO_PAGERDUTY_ROUTING_KEY"
SCENARIOS = ("data_drift", "bad_release", "override")
WAIT_S = 60.0


@dataclasses.dataclass
class Event:
    """One injected change and what the agent did about it (wall-clock seconds)."""

    name: str
    description: str
    expected_action: str
    injected_at: float = 0.0
    injected_index: int = 0
    detected_at: float | None = None
    detected_index: int | None = None
    acted_at: float | None = None
    action_detail: str = ""
    recovered_at: float | None = None
    passed: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    def since_injection(self, moment: float | None) -> str:
        return "-" if moment is None else f"{moment - self.injected_at:6.1f}s"


@dataclasses.dataclass
class StoryResult:
    events: list[Event]
    # (wall-clock time it finished, the action and its outcome)
    actions: list[tuple[float, executor.Executed]]
    notifications: list[receiver_mod.Received]
    report_path: pathlib.Path | None
    metrics_url: str

    @property
    def passed(self) -> bool:
        return all(event.passed for event in self.events)


class Observer:
    """Collects what the agent evaluates and does, for the UI and the timeline."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.evaluations: list[tuple[float, engine_mod.Evaluation]] = []
        self.actions: list[tuple[float, executor.Executed]] = []
        self.windows = 0

    def on_evaluation(self, evaluation: engine_mod.Evaluation) -> None:
        with self.lock:
            self.windows += 1
            self.evaluations.append((time.time(), evaluation))
            del self.evaluations[:-400]
            self.lock.notify_all()

    def on_action(self, done: executor.Executed) -> None:
        with self.lock:
            self.actions.append((time.time(), done))
            self.lock.notify_all()

    def wait_for(self, predicate: Callable[[], object], timeout_s: float = WAIT_S) -> object:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                found = predicate()
                if found or time.monotonic() >= deadline:
                    return found
                self.lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))

    def first_drifted(self, family: str, after: float) -> tuple[float, engine_mod.Evaluation] | None:
        for at, evaluation in self.evaluations:
            if at >= after and any(
                result.family.value == family and (result.drifted or any(d.drifted for d in result.details))
                for result in evaluation.results
            ):
                return at, evaluation
        return None

    def first_action(
        self, kind: actions_base.ActionKind, after: float, status: actions_base.OutcomeStatus | None = None
    ) -> tuple[float, executor.Executed] | None:
        for at, done in self.actions:
            if (
                at >= after
                and done.request.kind == kind
                and (status is None or done.outcome.status == status)
            ):
                return at, done
        return None

    def actions_since(self, after: float) -> list[executor.Executed]:
        return [done for at, done in self.actions if at >= after]


# -- set-up ------------------------------------------------------------------------------------


def train_versions() -> dict[str, server_mod.Predictor]:
    """Version 1 and 3 are good; 2 was rolled back long ago; 4 is a bad release (swapped inputs)."""
    base_schedule = workload.Schedule()
    good_old = workload.train_model(SEED, base_schedule)
    good = workload.train_model(SEED + 1, base_schedule)
    return {
        "1": server_mod.torch_predictor(good_old),
        "2": server_mod.torch_predictor(good_old, swap=(2, 4)),
        "3": server_mod.torch_predictor(good),
        # Columns x0 and x2 fed the wrong way round: accuracy falls by about 0.07 (severe).
        "4": server_mod.torch_predictor(good, swap=(0, 2)),
    }


def prepare_registry(tracking_uri: str, artifacts: pathlib.Path) -> registry_mod.ModelRegistry:
    """Register versions 1-4 with a serving history: 1 healthy, 2 rolled back, 3 champion."""
    from mlflow import tracking  # noqa: PLC0415 - slow import, only the demo needs it here

    client = tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(MODEL)
    for version in ("1", "2", "3", "4"):
        path = artifacts / f"v{version}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "MODEL").write_text(f"{MODEL} version {version}\n")
        client.create_model_version(MODEL, source=path.resolve().as_uri())
    registry = registry_mod.ModelRegistry(tracking_uri, MODEL, min_healthy_windows=1)
    now = time.time()
    registry.mark_deployed("1", at=now - 3 * 86400)
    registry.mark_healthy("1", windows=50)
    registry.mark_deployed("2", at=now - 2 * 86400)
    registry.mark_rolled_back("2", "accuracy drop after release", at=now - 2 * 86400 + 600)
    registry.mark_deployed("3", at=now - 86400)
    registry.mark_healthy("3", windows=50)
    registry.set_alias(registry_mod.Alias.CHAMPION, "3")
    return registry


def demo_settings(
    state: pathlib.Path, bootstrap: str, tracking_uri: str, receiver_url: str
) -> settings_mod.AgentSettings:
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "predictions_topic": PREDICTIONS,
            "labels_topic": LABELS,
            "dead_letter_topic": DEAD_LETTERS,
            "group_id": "drift-agent-demo",
            "max_poll_interval_ms": 10000,
        },
        "window": {"size": 1000},
        "reference": {"source": "first_n", "first_n": 3000},
        "http": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "WARNING", "json_format": False},
        "runtime": {"state_dir": str(state / "agent"), "model_name": MODEL, "drain_timeout_s": 10},
        "registry": {"tracking_uri": tracking_uri, "registered_model_name": MODEL, "min_healthy_windows": 1},
        "target": {"kind": "local", "local": {"path": str(state / "serving.json")}},
        "overrides": {"path": str(state / "overrides.yaml"), "reload_interval_s": 1.0},
        "audit": {"path": str(state / "audit.jsonl")},
        "alerting": {
            "sinks": [
                {"name": "slack", "type": "slack", "webhook_url_env": SLACK_ENV},
                {
                    "name": "pagerduty",
                    "type": "pagerduty",
                    "routing_key_env": PAGERDUTY_ENV,
                    "base_url": receiver_url,
                },
            ],
            "alert_sinks": ["slack"],
            "page_sinks": ["pagerduty", "slack"],
        },
    }
    return settings_mod.AgentSettings(**config)


# -- scenarios -----------------------------------------------------------------------------------


class Story:
    def __init__(
        self,
        observer: Observer,
        server: server_mod.SimulatedServer,
        state: pathlib.Path,
        say: Callable[[str], None],
    ) -> None:
        self.observer = observer
        self.server = server
        self.state = state
        self.say = say
        self.drift_window: engine_mod.Evaluation | None = None

    def _inject(self, event: Event, change: Callable[[workload.Schedule, int], workload.Schedule]) -> None:
        event.injected_index = self.server.inject(change)
        event.injected_at = time.time()
        self.say(f"[{event.name}] injected at record {event.injected_index}: {event.description}")

    def _detected(self, event: Event, family: str) -> None:
        found = self.observer.wait_for(lambda: self.observer.first_drifted(family, event.injected_at))
        if isinstance(found, tuple):
            event.detected_at, evaluation = found
            event.detected_index = evaluation.window.last_record_index
            if event.name == "data_drift":
                self.drift_window = evaluation

    def data_drift(self) -> Event:
        event = Event("data_drift", "inputs x3 and x5 shift by 0.3 standard deviations", "alert")
        shift = workload.DataShift(0, ("x3", "x5"), 0.3)
        self._inject(
            event, lambda s, i: dataclasses.replace(s, data_shifts=(dataclasses.replace(shift, start=i),))
        )
        self._detected(event, "data_drift")
        alert = self.observer.wait_for(
            lambda: self.observer.first_action(
                actions_base.ActionKind.ALERT, event.injected_at, actions_base.OutcomeStatus.SUCCEEDED
            )
        )
        if isinstance(alert, tuple):
            event.acted_at = alert[0]
            event.action_detail = f"alert {alert[1].request.incident_id} ({alert[1].request.severity})"
        self.server.inject(lambda s, i: dataclasses.replace(s, data_shifts=()))
        self.say(f"[{event.name}] inputs back to normal; waiting for the incident to resolve")
        resolved = self.observer.wait_for(
            lambda: self.observer.first_action(
                actions_base.ActionKind.RESOLVE, event.injected_at, actions_base.OutcomeStatus.SUCCEEDED
            )
        )
        if isinstance(resolved, tuple):
            event.recovered_at = resolved[0]
        kinds = {done.request.kind for done in self.observer.actions_since(event.injected_at)}
        # LOG is "minor: log and monitor" (a stray feature), not something that fired.
        unexpected = kinds - {
            actions_base.ActionKind.ALERT,
            actions_base.ActionKind.RESOLVE,
            actions_base.ActionKind.LOG,
        }
        if unexpected:
            event.notes.append(f"unexpected actions: {sorted(k.value for k in unexpected)}")
        event.passed = bool(event.detected_at and event.acted_at and event.recovered_at and not unexpected)
        return event

    def bad_release(self) -> Event:
        event = Event("bad_release", "version 4 released with two input columns swapped", "rollback to 3")
        target = local_target.LocalTarget(self.state / "serving.json")
        event.injected_index = self.server.index
        event.injected_at = time.time()
        target.set_version("4", (self.state / "artifacts" / "v4").resolve().as_uri())
        self.say(f"[{event.name}] injected at record {event.injected_index}: {event.description}")
        self._detected(event, "performance")
        rollback = self.observer.wait_for(
            lambda: self.observer.first_action(
                actions_base.ActionKind.ROLLBACK, event.injected_at, actions_base.OutcomeStatus.SUCCEEDED
            )
        )
        if isinstance(rollback, tuple):
            event.acted_at = rollback[0]
            details = rollback[1].outcome.details
            event.action_detail = (
                f"rollback {details.get('from_version', '4')} -> {details.get('to_version', '?')}"
            )
        serving = local_target.read_state(self.state / "serving.json").stable_version
        resolved = self.observer.wait_for(
            lambda: self.observer.first_action(
                actions_base.ActionKind.RESOLVE,
                event.acted_at or time.time(),
                actions_base.OutcomeStatus.SUCCEEDED,
            )
        )
        if isinstance(resolved, tuple):
            event.recovered_at = resolved[0]
        rollbacks = [
            d
            for d in self.observer.actions_since(event.injected_at)
            if d.request.kind == actions_base.ActionKind.ROLLBACK
            and d.outcome.status == actions_base.OutcomeStatus.SUCCEEDED
        ]
        if len(rollbacks) != 1:
            event.notes.append(f"{len(rollbacks)} rollbacks, expected exactly 1")
        event.passed = bool(event.detected_at and event.acted_at and serving == "3" and len(rollbacks) == 1)
        event.notes.append(f"serving version after rollback: {serving}")
        return event

    def override(self) -> Event:
        event = Event(
            "override", "on-call mutes and freezes the model, then inputs drift", "muted (no alert sent)"
        )
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
        written_at = time.time()
        (self.state / "overrides.yaml").write_text(
            yaml.safe_dump(
                {
                    "mute": [{"model": MODEL, "until": until, "reason": "demo: planned feature migration"}],
                    "freeze": [{"model": MODEL, "until": until, "reason": "demo: maintenance window"}],
                }
            )
        )
        self.say(f"[{event.name}] override file edited: mute + freeze {MODEL} until {until}")
        time.sleep(2.5)  # the watcher re-reads the file every second: give it two chances
        shift = workload.DataShift(0, ("x3", "x5"), 0.6)
        self._inject(
            event, lambda s, i: dataclasses.replace(s, data_shifts=(dataclasses.replace(shift, start=i),))
        )
        self._detected(event, "data_drift")
        skipped = self.observer.wait_for(
            lambda: self.observer.first_action(
                actions_base.ActionKind.ALERT, event.injected_at, actions_base.OutcomeStatus.SKIPPED
            )
        )
        if isinstance(skipped, tuple):
            event.acted_at = skipped[0]
            event.action_detail = f"alert skipped: {skipped[1].outcome.message[:60]}"
        sent = [
            d
            for d in self.observer.actions_since(event.injected_at)
            if d.outcome.status == actions_base.OutcomeStatus.SUCCEEDED
            and d.request.kind != actions_base.ActionKind.LOG
        ]
        event.notes.append(f"override in force {event.injected_at - written_at:.1f}s after the edit")
        event.passed = bool(event.detected_at and event.acted_at and not sent)
        if sent:
            event.notes.append(
                f"actions went through despite the override: {[d.request.kind.value for d in sent]}"
            )
        self.server.inject(lambda s, i: dataclasses.replace(s, data_shifts=()))
        (self.state / "overrides.yaml").unlink()
        return event


def write_drift_report(
    evaluation: engine_mod.Evaluation, reference: object, path: pathlib.Path
) -> pathlib.Path | None:
    """An Evidently HTML report of the window that triggered the data-drift alert."""
    from agent.demo import report  # noqa: PLC0415 - imports evidently (slow); only at the end

    return report.write(evaluation.window, reference, path)


def run_story(
    scenarios: tuple[str, ...],
    *,
    state: pathlib.Path,
    say: Callable[[str], None],
    view: ui_mod.View | None = None,
) -> StoryResult:
    if state.exists():
        shutil.rmtree(state)
    (state / "artifacts").mkdir(parents=True)
    say("starting the embedded Kafka broker (Tansu), MLflow registry (sqlite) and training models")
    with broker.EmbeddedBroker() as kafka_broker:
        kafka_broker.create_topics([PREDICTIONS, LABELS, DEAD_LETTERS])
        predictors = train_versions()
        tracking_uri = f"sqlite:///{(state / 'mlflow.db').resolve()}"
        prepare_registry(tracking_uri, state / "artifacts")
        local_target.LocalTarget(
            state / "serving.json",
            initial_version="3",
            initial_model_uri=(state / "artifacts" / "v3").resolve().as_uri(),
        )
        alerts = receiver_mod.AlertReceiver(printer=lambda line: say(f"  -> {line}")).start()
        os.environ[SLACK_ENV] = alerts.url + "/slack/webhook"
        os.environ[PAGERDUTY_ENV] = "demo-routing-key"
        producer = kafka.KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, linger_ms=5)
        loggers: dict[str, drift_logger.PredictionLogger] = {}

        def logger_for(version: str) -> drift_logger.PredictionLogger:
            if version not in loggers:
                loggers[version] = drift_logger.PredictionLogger(
                    kafka_broker.bootstrap_servers, PREDICTIONS, model_name=MODEL, model_version=version
                )
            return loggers[version]

        server = server_mod.SimulatedServer(
            predictors=predictors,
            target_path=state / "serving.json",
            logger_for=logger_for,
            emit_label=producer.send,
            labels_topic=LABELS,
            seed=SEED,
        ).start()
        observer = Observer()
        settings = demo_settings(state, kafka_broker.bootstrap_servers, tracking_uri, alerts.url)
        agent = app.Agent(
            settings,
            registry=prometheus_client.CollectorRegistry(),
            on_evaluation=observer.on_evaluation,
            on_action=observer.on_action,
        )
        agent.start()
        assert agent.health is not None
        metrics_url = agent.health.url + "/metrics"
        say(f"agent running; Prometheus metrics at {metrics_url}")
        loop = threading.Thread(target=agent.loop, name="agent-loop", daemon=True)
        loop.start()
        if view is not None:
            view.attach(observer, server, agent)
        story = Story(observer, server, state, say)
        ready = observer.wait_for(
            lambda: agent.sidecar.engine.reference_ready and observer.windows >= 3, 90.0
        )
        if not ready:
            say("the agent did not evaluate any window in 90 s; stopping")
        events = [getattr(story, name)() for name in scenarios] if ready else []
        agent.sidecar.stop_requested.set()
        loop.join(timeout=15)
        agent.stop()
        server.stop()
        for serving_logger in loggers.values():
            serving_logger.close(timeout_s=5)
        producer.close(timeout=5)
        alerts.stop()
        report_path = None
        if story.drift_window is not None and agent.sidecar.engine.reference_window is not None:
            report_path = write_drift_report(
                story.drift_window, agent.sidecar.engine.reference_window, state / "drift-report.html"
            )
        return StoryResult(events, list(observer.actions), alerts.snapshot(), report_path, metrics_url)


def run_demo(*, scenario: str, ui: bool, state_dir: pathlib.Path) -> int:
    scenarios = SCENARIOS if scenario == "all" else (scenario,)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        print(f"unknown scenario {unknown[0]!r}; valid: all, {', '.join(SCENARIOS)}")
        return 2
    view = ui_mod.View() if ui else None
    say = view.say if view is not None else ui_mod.plain_say
    started = time.time()
    if view is not None:
        with view.live():
            result = run_story(scenarios, state=state_dir, say=say, view=view)
    else:
        result = run_story(scenarios, state=state_dir, say=say)
    ui_mod.print_timeline(result, time.time() - started)
    return 0 if result.passed and result.events else 1


__all__ = ["SCENARIOS", "StoryResult", "policy", "run_demo", "run_story"]

"""The world an agent runs in, built the same way for the demo and for the end-to-end tests.

``demo.story`` and ``tests/e2e`` run the real composition root (``app.Agent``) against real
servers: its settings start from one skeleton (topics, windows, registry, and every file under
one state directory), its model versions are registered in MLflow the same way, and its loop runs
in a thread. What differs - the deployment target, the alert sinks, the knobs a scenario turns -
each caller lays over the skeleton (``merged``). The e2e tests import this module; it never
imports them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pathlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import prometheus_client

from agent import settings as settings_mod
from demo import processes
from demo import receiver as receiver_mod

# Type names only: agent.app imports torch and mlflow takes seconds, and the registry tests that
# register versions through this module need neither.
if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from agent import app
    from agent.pipeline import engine as engine_mod
    from agent.respond import executor

# Canary percentages of the demo and the e2e canary; a short analysis interval (the default is
# five minutes) lets a canary walk every step within a scenario's patience.
CANARY_STEPS = (10, 50, 100)
CANARY_ANALYSIS_INTERVAL_S = 2.0


@dataclasses.dataclass(frozen=True)
class Topics:
    """The three topics an agent reads and writes."""

    predictions: str
    labels: str
    dead_letters: str

    @classmethod
    def for_stem(cls, stem: str) -> Topics:
        return cls(f"{stem}.predictions", f"{stem}.labels", f"{stem}.dlq")

    def names(self) -> list[str]:
        return [self.predictions, self.labels, self.dead_letters]

    def settings(self) -> dict[str, str]:
        return {
            "predictions_topic": self.predictions,
            "labels_topic": self.labels,
            "dead_letter_topic": self.dead_letters,
        }


@dataclasses.dataclass(frozen=True)
class ReceiverSinks:
    """Slack and PagerDuty sinks whose endpoints are a local ``demo.receiver.AlertReceiver``.

    The real sinks post to it, wire format unchanged: Slack's webhook URL and PagerDuty's routing
    key are read from the environment variables named here, PagerDuty's base URL is the receiver's.
    """

    slack_env: str
    pagerduty_env: str
    # The data owner's Slack channel, for data-quality notifications; None = the routes above.
    data_owner_env: str | None = None

    def alerting(self, receiver_url: str) -> dict[str, Any]:
        """The ``alerting`` settings: alerts to Slack; pages to PagerDuty and Slack; data quality
        to the data owner's channel when there is one."""
        sinks: list[dict[str, Any]] = [
            {"name": "slack", "type": "slack", "webhook_url_env": self.slack_env},
            {
                "name": "pagerduty",
                "type": "pagerduty",
                "routing_key_env": self.pagerduty_env,
                "base_url": receiver_url,
            },
        ]
        routes: dict[str, Any] = {"alert_sinks": ["slack"], "page_sinks": ["pagerduty", "slack"]}
        if self.data_owner_env is not None:
            sinks.append({"name": "data-owner", "type": "slack", "webhook_url_env": self.data_owner_env})
            routes["data_owner_sinks"] = ["data-owner"]
        return {"sinks": sinks, **routes}

    def environ(self, receiver_url: str, routing_key: str) -> dict[str, str]:
        """The environment those sinks read their secrets from."""
        env = {self.slack_env: receiver_url + "/slack/webhook", self.pagerduty_env: routing_key}
        if self.data_owner_env is not None:
            env[self.data_owner_env] = receiver_url + receiver_mod.DATA_OWNER_PATH + "webhook"
        return env


@dataclasses.dataclass(frozen=True)
class Wiring:
    """Where one agent reads its traffic, keeps its registry and writes its files (under ``state``)."""

    state: pathlib.Path
    bootstrap: str
    topics: Topics
    tracking_uri: str
    model_name: str


def agent_config(wiring: Wiring, *, group_id: str, window: int, reference_windows: int) -> dict[str, Any]:
    """The settings every agent here starts from: windows of ``window`` records, the first
    ``reference_windows`` of them the reference, and every file under ``wiring.state``."""
    state, model_name = wiring.state, wiring.model_name
    return {
        "kafka": {
            "bootstrap_servers": wiring.bootstrap,
            **wiring.topics.settings(),
            "group_id": group_id,
            "max_poll_interval_ms": 10_000,
        },
        "window": {"size": window},
        "reference": {"source": "first_n", "first_n": reference_windows * window},
        # Internal topics named after the group: runs sharing a broker never share work or state.
        "streams": {
            "topic_prefix": group_id,
            "partitions": 4,
            "commit_interval_s": 0.5,
            "state_interval_s": 1.0,
        },
        "http": {"host": processes.LOOPBACK, "port": 0},
        "logging": {"level": "WARNING", "json_format": False},
        "runtime": {"state_dir": str(state / "agent"), "model_name": model_name, "drain_timeout_s": 10},
        "registry": {"tracking_uri": wiring.tracking_uri, "registered_model_name": model_name},
        "overrides": {"path": str(state / "overrides.yaml"), "reload_interval_s": 1.0},
        "audit": {"path": str(state / "audit.jsonl")},
        "retrain": {"runner": {"work_dir": str(state / "retrain")}},
    }


def quick_canary() -> dict[str, Any]:
    """``canary`` settings that walk ``CANARY_STEPS`` with an analysis every few seconds."""
    return {
        "steps": list(CANARY_STEPS),
        "analysis_interval_s": CANARY_ANALYSIS_INTERVAL_S,
        "min_samples": 100,
        "max_failed_checks": 2,
    }


def merged(base: Mapping[str, Any], *overlays: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each overlay laid over it: mappings merge key by key, anything else replaces."""
    result = dict(base)
    for overlay in overlays:
        for key, value in overlay.items():
            current = result.get(key)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                result[key] = merged(current, value)
            else:
                result[key] = copy.deepcopy(value)  # the caller's lists and dicts stay its own
    return result


def agent_settings(base: Mapping[str, Any], *overlays: Mapping[str, Any]) -> settings_mod.AgentSettings:
    return settings_mod.AgentSettings(**merged(base, *overlays))


def register_versions(
    client: MlflowClient,
    model_name: str,
    sources: Sequence[str],
    tags: Mapping[int, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the registered model and one version per source (``tags``: version number -> tags).

    One call per version, not waiting for a READY status (these sources need no copying); the
    tags go in the same call, so a history costs no extra round trips.
    """
    client.create_registered_model(model_name)
    return [
        str(
            client.create_model_version(
                model_name, source, tags=dict((tags or {}).get(number, {})), await_creation_for=0
            ).version
        )
        for number, source in enumerate(sources, start=1)
    ]


@contextlib.contextmanager
def running_agent(
    settings: settings_mod.AgentSettings,
    *,
    on_evaluation: Callable[[engine_mod.Evaluation], None],
    on_action: Callable[[executor.Executed], None],
    join_timeout_s: float = 15.0,
) -> Iterator[app.Agent]:
    """The agent started, its loop in a thread; on exit the loop is asked to stop, then the agent."""
    agent, loop = start_agent(settings, on_evaluation=on_evaluation, on_action=on_action)
    try:
        yield agent
    finally:
        agent.sidecar.stop_requested.set()
        loop.join(timeout=join_timeout_s)
        agent.stop()


def start_agent(
    settings: settings_mod.AgentSettings,
    *,
    on_evaluation: Callable[[engine_mod.Evaluation], None],
    on_action: Callable[[executor.Executed], None],
    loop_name: str = "agent-loop",
) -> tuple[app.Agent, threading.Thread]:
    """An agent (own metrics registry) started, with its loop running in a daemon thread.

    Stopping is the caller's: set ``agent.sidecar.stop_requested``, join the thread, ``agent.stop()``.
    """
    from agent import app  # noqa: PLC0415 - imports torch: paid only where an agent runs

    agent = app.Agent(
        settings,
        metrics_registry=prometheus_client.CollectorRegistry(),
        on_evaluation=on_evaluation,
        on_action=on_action,
    )
    try:
        agent.start()
    except BaseException:
        agent.stop()  # what did start (servers, watchers) must not outlive the failure
        raise
    loop = threading.Thread(target=agent.loop, name=loop_name, daemon=True)
    loop.start()
    return agent, loop

"""Agents as the chart runs them: separate processes, one consumer group, one broker.

``Cluster`` writes one settings file per agent (same group, same internal topics; own state
directory, audit file and HTTP port), starts ``drift-agent run`` for each, and can kill one
with SIGKILL or SIGTERM and start it again on an empty state directory, as Kubernetes
restarts a pod. What the agents decided and did is read from their audit files and from the
shared journal topic: nothing is asked of a process that may be dead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import kafka
import numpy as np
import yaml

from agent import settings as settings_mod
from agent.runtime import table, topics
from demo import broker, world

WAIT_S = 120.0
# Record i of produce_stream happens at EPOCH + i * EVENT_SPACING_S (event time, in seconds).
EPOCH = int(time.time())
EVENT_SPACING_S = 0.01


def produce_stream(
    bootstrap: str,
    topic: str,
    labels_topic: str | None,
    *,
    count: int,
    drift_from: int | None,
    seed: int,
    model: str = "churn",
    version: str = "3",
    partition_of: Callable[[int], int | None] | None = None,
    start: int = 0,
    rate: float | None = None,
    drifting_partition: int | None = None,
) -> None:
    """Prediction records keyed by request id (and their labels); inputs shift from ``drift_from``.

    ``partition_of(i)`` pins record ``i`` to a partition (None: Kafka's key hash decides);
    with ``drifting_partition`` only that partition's records shift.
    """
    rng = np.random.default_rng(seed)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    began = time.monotonic()
    for i in range(start, start + count):
        if rate is not None and (i - start) % 100 == 0:
            # Paced like a serving fleet: partitions then arrive interleaved in event time.
            time.sleep(max(0.0, began + (i - start) / rate - time.monotonic()))
        partition = partition_of(i) if partition_of is not None else None
        shifted = (
            drift_from is not None
            and i >= drift_from
            and (drifting_partition is None or partition == drifting_partition)
        )
        x = rng.normal(size=4) + (np.array([1.5, 1.5, 0.0, 0.0]) if shifted else 0.0)
        request_id = f"req-{i}"
        timestamp = EPOCH + i * EVENT_SPACING_S
        record = {
            "request_id": request_id,
            "timestamp": timestamp,
            "model_name": model,
            "model_version": version,
            "features": {"a": float(x[0]), "b": float(x[1]), "c": float(x[2]), "d": float(x[3])},
            "prediction": float(x[2] > 0),
            "confidence": 0.8,
        }
        producer.send(topic, key=request_id.encode(), value=json.dumps(record).encode(), partition=partition)
        if labels_topic is not None:
            label = {"request_id": request_id, "timestamp": timestamp + 1, "label": float(x[2] > 0)}
            producer.send(
                labels_topic, key=request_id.encode(), value=json.dumps(label).encode(), partition=partition
            )
    producer.flush()
    producer.close()


@dataclasses.dataclass
class AgentProcess:
    name: str
    config: pathlib.Path
    state_dir: pathlib.Path
    log_path: pathlib.Path
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        env = {**os.environ, **self.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, nothing flushed, as the kernel's OOM killer or a lost node does."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def terminate(self, timeout_s: float) -> float:
        """SIGTERM, as the kubelet sends; the seconds the drain took."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout_s)
        return time.monotonic() - started

    def restart_on_empty_disk(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True)
        self.start()

    def audit(self) -> list[dict[str, Any]]:
        path = self.state_dir / "audit.jsonl"
        entries = []
        for archived in [*sorted(self.state_dir.parent.glob(f"{self.name}-audit-*.jsonl")), path]:
            if archived.exists():
                for line in archived.read_text(encoding="utf-8").splitlines():
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        continue  # the torn last line of a killed process
        return entries

    def keep_audit(self) -> None:
        """Move the audit file aside before the state directory is wiped (the test still reads it)."""
        path = self.state_dir / "audit.jsonl"
        if path.exists():
            shutil.copy(path, self.state_dir.parent / f"{self.name}-audit-{self.starts}.jsonl")

    def assignments(self) -> list[float]:
        """When this agent's consumer got partitions, as epoch seconds (from its log)."""
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "partitions assigned:" in line or "partitions revoked" in line:
                try:
                    found.append(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")))
                except ValueError:
                    continue
        return found

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    def __init__(
        self,
        root: pathlib.Path,
        kafka_broker: broker.EmbeddedBroker,
        *,
        name: str,
        agents: int,
        settings: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.environ = dict(environ or {})
        self.bootstrap = kafka_broker.bootstrap_servers
        self.name = name
        self.settings = settings
        self.agents = [self._agent(i) for i in range(agents)]

    def _agent(self, index: int) -> AgentProcess:
        name = f"agent-{index}"
        state_dir = self.root / name
        state_dir.mkdir(parents=True, exist_ok=True)
        config = world.merged(
            self.settings,
            {
                "runtime": {"state_dir": str(state_dir), "drain_timeout_s": 20},
                "audit": {"path": str(state_dir / "audit.jsonl")},
                "http": {"host": "127.0.0.1", "port": 0},
                "logging": {"json_format": False, "level": "INFO"},
                "overrides": {"path": str(self.root / "overrides.yaml")},
            },
        )
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return AgentProcess(name, path, state_dir, self.root / f"{name}.log", environ=self.environ)

    def start(self) -> None:
        for agent in self.agents:
            agent.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        for agent in self.agents:
            if agent.running:
                try:
                    agent.terminate(timeout_s)
                except subprocess.TimeoutExpired:
                    agent.kill()

    def wait_ready(self, settle_s: float = 3.0) -> None:
        """Every running agent owns partitions and no rebalance happened for ``settle_s``."""

        def settled() -> bool:
            last_change = 0.0
            for agent in self.agents:
                if not agent.running:
                    continue
                assigned = agent.assignments()
                if not assigned:
                    return False
                last_change = max(last_change, assigned[-1])
            return time.time() - last_change >= settle_s

        wait_for(settled, what="every agent assigned its partitions", logs=self.logs)

    def decisions(self) -> Iterator[dict[str, Any]]:
        for agent in self.agents:
            yield from (e for e in agent.audit() if e.get("kind") == "decision")

    def windows(self, *, labelled: bool = False) -> set[tuple[str, str | None, int]]:
        """(model, version, records) of every window judged, whichever agent judged it (replays merge)."""
        seen = set()
        for decision in self.decisions():
            window = decision.get("window")
            if window and bool(window.get("labelled")) == labelled:
                seen.add((window["model"], window.get("model_version"), int(window["records"])))
        return seen

    def journal(self) -> dict[str, dict[str, Any]]:
        """The shared executor journal: idempotency key -> its latest record."""
        kafka_settings = settings_mod.KafkaSettings(bootstrap_servers=self.bootstrap)
        producer = kafka.KafkaProducer(bootstrap_servers=self.bootstrap)
        try:
            internal = topics.InternalTopics.of(
                settings_mod.StreamsSettings(**self.settings.get("streams", {}))
            )
            values = table.CompactedTable(kafka_settings, internal.journal, producer).read([0])
        finally:
            producer.close()
        return {key.decode(): json.loads(versions[-1]) for key, versions in values.items()}

    def logs(self) -> str:
        return "\n\n".join(f"--- {a.name} ---\n{a.log_tail()}" for a in self.agents)


def topology(
    kafka_broker: broker.EmbeddedBroker,
    alerts_url: str,
    *,
    partitions: int,
    window: int,
    reference: int,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A fresh stem (input topics, group, internal topics), the agents' settings and environment.

    Alerts go to Slack's and pages to PagerDuty's stand-in at ``alerts_url``.
    """
    stem = f"so-{uuid.uuid4().hex[:8]}"
    topics_ = world.Topics.for_stem(stem)
    kafka_broker.create_topics(topics_.names(), partitions=partitions)
    env_stem = stem.replace("-", "_").upper()
    sinks = world.ReceiverSinks(slack_env=f"SLACK_{env_stem}", pagerduty_env=f"PD_{env_stem}")
    settings = {
        "kafka": {
            "bootstrap_servers": kafka_broker.bootstrap_servers,
            **topics_.settings(),
            "group_id": stem,
            "max_poll_interval_ms": 10_000,
            "session_timeout_ms": 6_000,
        },
        "window": {"size": window},
        "reference": {"source": "first_n", "first_n": reference},
        "streams": {
            "topic_prefix": stem,
            "partitions": partitions,
            "commit_interval_s": 0.5,
            "state_interval_s": 1.0,
        },
        "alerting": sinks.alerting(alerts_url),
        "runtime": {"model_name": "churn"},
    }
    return stem, settings, sinks.environ(alerts_url, "R0UT1NGKEY")


@contextlib.contextmanager
def running_cluster(
    tmp: pathlib.Path,
    kafka_broker: broker.EmbeddedBroker,
    sink_url: str,
    *,
    agents: int,
    partitions: int,
    window: int,
    reference: int,
    started: int | None = None,
    configure: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[tuple[Cluster, str]]:
    """``agents`` agents of a fresh topology (its stem is yielded), the first ``started`` of them
    (all by default) running and assigned; stopped on exit. ``configure`` edits the settings."""
    stem, settings, environ = topology(
        kafka_broker, sink_url, partitions=partitions, window=window, reference=reference
    )
    if configure is not None:
        configure(settings)
    cluster = Cluster(tmp / stem, kafka_broker, name=stem, agents=agents, settings=settings, environ=environ)
    for agent in cluster.agents[:started]:
        agent.start()
    try:
        cluster.wait_ready()
        yield cluster, stem
    finally:
        cluster.stop()


def wait_for(
    condition: Callable[[], bool], timeout_s: float = WAIT_S, *, what: str, logs: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs()}")


def committed_total(bootstrap: str, group_id: str, topic: str, partitions: int) -> int:
    """Input records the group has committed on ``topic``, over all its partitions."""
    reader = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    try:
        offsets = (reader.committed(kafka.TopicPartition(topic, p)) for p in range(partitions))
        return sum(offset or 0 for offset in offsets)
    finally:
        reader.close()


def counts(items: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in items:
        found[item] = found.get(item, 0) + 1
    return found


def stored_states(bootstrap: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Each model's latest stored evaluator state (the shared store, read as a new owner would)."""
    from agent.evaluate import model as model_mod

    streams = settings_mod.StreamsSettings(**settings.get("streams", {}))
    internal = topics.InternalTopics.of(streams)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
    try:
        kafka_settings = settings_mod.KafkaSettings(bootstrap_servers=bootstrap)
        values = table.CompactedTable(kafka_settings, internal.state, producer).read(
            range(streams.partitions)
        )
    finally:
        producer.close()
    return {key.decode(): model_mod.decode_state(versions[-1]) for key, versions in values.items()}

"""`drift-agent run`: one process runs all three stages; many processes share them through Kafka.

Each agent has one consumer in one group over four kinds of partitions: the prediction and label
topics (ingest), ``<prefix>.fragments`` (evaluate) and ``<prefix>.actions`` (act). Kafka spreads
the partitions over the agents and moves them when one joins or leaves; the range assignor keeps
a prediction partition and the label partition of the same number together (they are
co-partitioned by request id). One consumer, not one per stage: the embedded broker and
kafka-python lose the assignment of a second group polled from the same thread.

``step()`` polls once, hands each record to the stage of its topic, and lets each stage make its
work durable on its own cadence. Before the first poll the internal topics are created and
checked; while the brokers are away this is retried with backoff and readiness stays false.

SIGTERM (kopf-style graceful drain): stop polling, make each stage's work durable (fragments,
actions, state, then offsets), within ``runtime.drain_timeout_s``; past the bound the process
exits hard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import kafka
from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.ingest import consumers, source
from agent.observability import errors
from agent.observability import metrics as metrics_mod
from agent.runtime import act_stage, evaluate_stage, heartbeat, ingest_stage, topics

log = logging.getLogger(__name__)

MAIN_LOOP = "main loop"


class Stages(Protocol):
    producer: kafka.KafkaProducer
    ingest: ingest_stage.IngestStage
    evaluate: evaluate_stage.EvaluateStage
    act: act_stage.ActStage


StagesT = TypeVar("StagesT", bound=Stages)


class Sidecar(Generic[StagesT]):
    """The loop over the stages; ``build`` makes them once the topology is in place (``stages``
    is what ``build`` returned, with its own type: the composition root reads its extra parts)."""

    def __init__(
        self,
        *,
        kafka_settings: settings_mod.KafkaSettings,
        streams: settings_mod.StreamsSettings,
        runtime: settings_mod.RuntimeSettings,
        metrics: metrics_mod.AgentMetrics,
        build: Callable[[topics.InternalTopics, dict[str, int]], StagesT],
        clock: Callable[[], float] = time.monotonic,
        heartbeats: heartbeat.Heartbeats | None = None,
    ) -> None:
        self._kafka = kafka_settings
        self._heartbeats = heartbeats
        self._stall_after_s = runtime.liveness_stall_s
        self._streams = streams
        self._metrics = metrics
        self.drain_timeout_s = runtime.drain_timeout_s
        self._build = build
        self._clock = clock
        self._backoff = source.Backoff(
            kafka_settings.reconnect_backoff_initial_s, kafka_settings.reconnect_backoff_max_s, clock
        )
        self._topology_error: str | None = None
        self.stages: StagesT | None = None
        self.consumer: source.Source | None = None
        self.stop_requested = threading.Event()

    def _ensure_stages(self) -> tuple[StagesT, source.Source] | None:
        if self.stages is not None and self.consumer is not None:
            return self.stages, self.consumer
        if not self._backoff.ready():
            return None
        try:
            internal, counts = topics.ensure(self._kafka, self._streams)
        except (kafka_errors.KafkaError, OSError) as exc:
            delay = self._backoff.failed()
            self._topology_error = errors.describe(exc)
            log.warning(
                "cannot create or check the internal topics (%s); retrying in %.1fs. Check the "
                "broker address and that the agent may create topics (or create them beforehand)",
                errors.describe(exc),
                delay,
            )
            return None
        self._backoff.succeeded()
        self._topology_error = None
        stages = self._build(internal, counts)
        self.consumer = consumers.open_source(
            self._kafka,
            metrics=self._metrics,
            topics=[*source.input_topics(self._kafka), internal.fragments, internal.actions],
            on_assigned=self._assigned,
            on_revoked=self._revoked,
        )
        stages.evaluate.attach(self.consumer)
        self.stages = stages
        return stages, self.consumer

    def _assigned(self, partitions: Sequence[source.Partition]) -> None:
        assert self.stages is not None
        self.stages.evaluate.assigned(partitions)
        self.stages.act.assigned(partitions, self.consumer)

    def _revoked(self, partitions: Sequence[source.Partition]) -> None:
        assert self.stages is not None and self.consumer is not None
        self.stages.ingest.revoked(partitions, self.consumer)
        self.stages.evaluate.revoked(partitions)
        self.stages.act.revoked(partitions)

    def step(self) -> int:
        if self._heartbeats is not None:
            # One beat per turn of the loop: a turn stuck past runtime.liveness_stall_s fails /healthz.
            self._heartbeats.beat(MAIN_LOOP, self._stall_after_s)
        ready = self._ensure_stages()
        if ready is None:
            self.stop_requested.wait(0.2)
            return 0
        stages, consumer = ready
        batch = consumer.poll_batch()
        ingest, evaluate, act = stages.ingest, stages.evaluate, stages.act
        for message in batch:
            if message.topic in ingest.topics:
                ingest.handle(message)
            elif message.topic in evaluate.topics:
                evaluate.handle(message)
            elif message.topic in act.topics:
                act.handle(message)
        if ingest.due():
            ingest.make_durable(consumer)
        if evaluate.due():
            evaluate.make_durable(consumer)
        act.step(consumer)
        return len(batch)

    def ready(self) -> bool:
        if self.consumer is None or self.stop_requested.is_set():
            return False
        return self.consumer.ready

    def readiness_reason(self) -> str:
        if self.stop_requested.is_set():
            return "draining"
        if self.consumer is None:
            return f"setting up internal topics ({self._topology_error or 'starting'})"
        return self.consumer.status()

    def run(self) -> None:
        while not self.stop_requested.is_set():
            self.step()

    def drain(self, finish_actions: Callable[[float], object] | None = None) -> None:
        """Make every stage's work durable and leave the group; called after the loop stops.

        ``finish_actions(timeout_s)`` lets the executor finish what it holds before the last
        commit of the actions partition, within what is left of the drain bound.
        """
        stages, consumer = self.stages, self.consumer
        if stages is None or consumer is None:
            return
        deadline = time.monotonic() + self.drain_timeout_s
        stages.ingest.close(consumer, timeout_s=max(0.1, (deadline - time.monotonic()) / 3))
        stages.evaluate.make_durable(consumer)
        if finish_actions is not None:
            finish_actions(max(0.1, deadline - time.monotonic() - 1.0))
        stages.act.commit_done(consumer)
        consumer.close()

"""`drift-agent run`: the sidecar loop. Thin on purpose: poll, parse, evaluate, checkpoint, commit.

At-least-once: offsets are committed only after a checkpoint has made the engine's state (open
windows, detector state, policy state) durable. After a crash the agent resumes from the last
checkpoint and Kafka redelivers what came after it; windows that close again produce the same
idempotency keys, so no action runs twice.

SIGTERM (kopf-style graceful drain): stop polling, finish the batch in hand, checkpoint, commit,
flush the dead-letter producer and the audit log, all within ``runtime.drain_timeout_s``, then
exit; past the bound the process exits hard.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import prometheus_client

from agent import settings as settings_mod
from agent.ingest import dead_letters, kserve, parsing, records, source
from agent.observability import collectors
from agent.observability import metrics as metrics_mod
from agent.pipeline import engine as engine_mod
from agent.runtime import checkpoint
from agent.runtime import http as http_mod

log = logging.getLogger(__name__)

EvaluationHook = Callable[[engine_mod.Evaluation], None]


@dataclasses.dataclass
class LoopStats:
    batches: int = 0
    records: int = 0
    rejected: int = 0
    evaluations: int = 0
    checkpoints: int = 0


class Sidecar:
    """The loop around one ``Engine``. ``step()`` is one batch; ``run()`` loops until stopped."""

    def __init__(
        self,
        *,
        kafka: settings_mod.KafkaSettings,
        mapping: settings_mod.FieldMappingSettings,
        kserve_settings: settings_mod.KServeSettings,
        runtime: settings_mod.RuntimeSettings,
        engine: engine_mod.Engine,
        metrics_registry: prometheus_client.CollectorRegistry,
        on_evaluation: EvaluationHook | None = None,
        on_durable: Callable[[], None] | None = None,
        policy_state: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        checkpoint_interval_s: float = 5.0,
        start_index: int = 0,
    ) -> None:
        self.engine = engine
        self.drain_timeout_s = runtime.drain_timeout_s
        self.metrics = metrics_mod.AgentMetrics(metrics_registry)
        self.metrics_registry = metrics_registry
        self.parser = parsing.RecordParser(mapping, kafka.max_message_bytes)
        self.source = source.KafkaSource(kafka, metrics=self.metrics, on_revoked=self._on_revoked)
        self.dlq = dead_letters.DeadLetterQueue(kafka, metrics=self.metrics)
        self.on_evaluation = on_evaluation
        self.on_durable = on_durable
        self.policy_state = policy_state
        self.clock = clock
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_path = runtime.state_dir / checkpoint.CHECKPOINT_FILE
        self.stats = LoopStats()
        self.stop_requested = threading.Event()
        # The last message per partition since the last commit: all a commit needs.
        self._uncommitted: dict[tuple[str, int], source.RawMessage] = {}
        self._last_checkpoint = clock()
        # Arrival index of the next prediction record; restored from the checkpoint.
        self._index = start_index
        self._labels_topic = kafka.labels_topic
        # KServe's inference logger sends request and response as two CloudEvents: the adapter
        # joins them into prediction records instead of the plain JSON parser.
        self.kserve = kserve.KServeAdapter.from_settings(kserve_settings) if kserve_settings.enabled else None
        # The open windows' fill, replaced after each batch and read by /metrics at scrape time.
        self._window_fill: tuple[collectors.Sample, ...] = ()
        collectors.register_gauge(metrics_registry, collectors.WINDOW_FILL, lambda: self._window_fill)
        collectors.register_gauge(metrics_registry, collectors.READY, collectors.flag(self.ready))

    # -- one batch ----------------------------------------------------------------------------

    def step(self) -> int:
        started = time.perf_counter()
        batch = self.source.poll_batch()
        predictions_before = self._index
        for message in batch:
            self._handle(message)
        for message in batch:
            self._uncommitted[(message.topic, message.partition)] = message
        if batch:
            self.stats.batches += 1
            self.stats.records += len(batch)
            self.metrics.record_out(self._index - predictions_before)
            self.metrics.observe_batch(time.perf_counter() - started)
        self._snapshot_window_fill()
        if self.clock() - self._last_checkpoint >= self.checkpoint_interval_s:
            self.make_durable()
        return len(batch)

    def _handle(self, message: source.RawMessage) -> None:
        if self._labels_topic is not None and message.topic == self._labels_topic:
            label = self.parser.parse_label(message.value)
            if isinstance(label, records.Rejected):
                self._reject(label, message)
                return
            self._emit(self.engine.add_label(label))
            return
        if self.kserve is not None:
            joined = self.kserve.add(message)
            if isinstance(joined, records.Rejected):
                self._reject(joined, message)
                return
            for record in joined:
                self._add_prediction(record)
            return
        parsed = self.parser.parse_prediction(message.value)
        if isinstance(parsed, records.Rejected):
            self._reject(parsed, message)
            return
        self._add_prediction(parsed)

    def _add_prediction(self, record: records.PredictionRecord) -> None:
        self._emit(self.engine.add_prediction(record, self._index))
        self._index += 1

    def _reject(self, rejected: records.Rejected, message: source.RawMessage | None) -> None:
        self.stats.rejected += 1
        self.dlq.send(rejected, message)

    def _emit(self, evaluations: Sequence[engine_mod.Evaluation]) -> None:
        for evaluation in evaluations:
            self.stats.evaluations += 1
            self.metrics.window_closed(evaluation.window.model_version or "")
            if self.on_evaluation is not None:
                self.on_evaluation(evaluation)

    def _snapshot_window_fill(self) -> None:
        self._window_fill = metrics_mod.window_fill_samples(
            self.engine.window_fill(), self.engine.window_size
        )

    # -- durability -----------------------------------------------------------------------------

    def make_durable(self) -> bool:
        """Checkpoint, flush the dead-letter queue, then commit what the checkpoint covers."""
        self.engine.expire_labels()
        if self.kserve is not None:
            for unjoined in self.kserve.expire():
                self._reject(unjoined, None)
        if not self.dlq.flush(timeout_s=10.0):
            log.warning("dead-letter queue not flushed; offsets stay uncommitted")
            return False
        policy_state = self.policy_state() if self.policy_state is not None else {}
        checkpoint.save_checkpoint(
            self.checkpoint_path, {"engine": self.engine, "index": self._index, "policy_state": policy_state}
        )
        if self.on_durable is not None:
            self.on_durable()
        self.stats.checkpoints += 1
        self._last_checkpoint = self.clock()
        committed = self.source.commit(list(self._uncommitted.values()))
        if committed:
            self._uncommitted = {}
        return committed

    def _on_revoked(self, partitions: Sequence[source.Partition]) -> None:
        # Partitions move to another member: make what we processed from them durable now.
        log.info("partitions revoked (%d); checkpointing before the rebalance", len(partitions))
        self.make_durable()

    # -- lifecycle ------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.source.ready and not self.stop_requested.is_set()

    def readiness_reason(self) -> str:
        if self.stop_requested.is_set():
            return "draining"
        if not self.engine.reference_ready:
            return "collecting reference data"
        return self.source.status()

    def run(self) -> LoopStats:
        while not self.stop_requested.is_set():
            self.step()
        return self.stats

    def drain(self) -> None:
        """Finish what is in hand and make it durable; called after the loop stops."""
        deadline = time.monotonic() + self.drain_timeout_s
        self.make_durable()
        self.dlq.close(timeout_s=max(0.1, deadline - time.monotonic()))
        self.source.close()


def health_server(
    config: settings_mod.HttpSettings, sidecar: Sidecar, metrics_registry: prometheus_client.CollectorRegistry
) -> http_mod.HealthServer:
    return http_mod.HealthServer(
        config.host,
        config.port,
        metrics_registry,
        readiness=sidecar.ready,
        liveness=lambda: True,
        readiness_reason=sidecar.readiness_reason,
    )

"""The agent's own Prometheus metrics, in one object bound to one registry.

Each test builds a fresh ``CollectorRegistry`` and reads values with ``get_sample_value``.
Other modules that export metrics take the same registry in their constructor and register
their own objects on it (names prefixed ``drift_agent_`` too), so one ``/metrics`` shows all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import prometheus_client

PREFIX = "drift_agent_"
# Batches are tens of milliseconds when healthy and seconds when a detector is slow.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABEL_JOIN_OUTCOMES = ("joined", "orphan", "late", "expired", "duplicate")
NO_SEGMENT = "all"


def segment_label(segment: Mapping[str, str] | None) -> str:
    """A stable label value for a segment: ``k=v,k2=v2`` sorted by key, ``all`` when unsegmented."""
    if not segment:
        return NO_SEGMENT
    return ",".join(f"{key}={segment[key]}" for key in sorted(segment))


class AgentMetrics:
    """Ingest, windowing and health metrics. Methods are the only way callers touch them."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.registry = registry
        self.records_in = prometheus_client.Counter(
            PREFIX + "records_in_total",
            "Kafka records received, by topic (before validation).",
            ["topic"],
            registry=registry,
        )
        self.records_out = prometheus_client.Counter(
            PREFIX + "records_out_total",
            "Valid prediction records handed to the windows (evaluated).",
            registry=registry,
        )
        self.dlq = prometheus_client.Counter(
            PREFIX + "dlq_total",
            "Records sent to the dead-letter topic, by rejection reason.",
            ["reason"],
            registry=registry,
        )
        self.dlq_dropped = prometheus_client.Counter(
            PREFIX + "dlq_dropped_total",
            "Dead-letter records lost because the DLQ was unreachable and its retry buffer was full "
            "(or the broker refused them for good), by rejection reason.",
            ["reason"],
            registry=registry,
        )
        self.dlq_pending = prometheus_client.Gauge(
            PREFIX + "dlq_pending",
            "Dead-letter records waiting in memory for the DLQ topic to accept them.",
            registry=registry,
        )
        self.batch_seconds = prometheus_client.Histogram(
            PREFIX + "batch_seconds",
            "Wall time to process one consumed batch, end to end.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = prometheus_client.Gauge(
            PREFIX + "consumer_lag",
            "Records behind the partition's high watermark, per assigned partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.commits = prometheus_client.Counter(
            PREFIX + "offset_commits_total",
            "Offset commits by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        self.broker_connected = prometheus_client.Gauge(
            PREFIX + "kafka_connected",
            "1 while the consumer holds at least one broker connection.",
            registry=registry,
        )
        self.window_fill = prometheus_client.Gauge(
            PREFIX + "window_fill",
            "Fraction (0..1) of the open window filled, per model version and segment.",
            ["model_version", "segment"],
            registry=registry,
        )
        self.windows_closed = prometheus_client.Counter(
            PREFIX + "windows_closed_total",
            "Windows closed and handed to the detectors, per model version.",
            ["model_version"],
            registry=registry,
        )
        self.ready = prometheus_client.Gauge(
            PREFIX + "ready",
            "1 when the agent is ready (connected, in its consumer group, reference loaded).",
            registry=registry,
        )
        self.label_join = prometheus_client.Counter(
            PREFIX + "label_join_total",
            "Label join outcomes: joined, orphan (no prediction), late (after TTL), "
            "expired (prediction never labelled), duplicate.",
            ["outcome"],
            registry=registry,
        )
        for outcome in LABEL_JOIN_OUTCOMES:
            # Present from the start so rate() over a fresh agent is 0, not absent.
            self.label_join.labels(outcome=outcome)
        self.commits.labels(result="ok")
        self.commits.labels(result="failed")

    def record_in(self, topic: str, count: int = 1) -> None:
        self.records_in.labels(topic=topic).inc(count)

    def record_out(self, count: int = 1) -> None:
        self.records_out.inc(count)

    def dead_lettered(self, reason: str) -> None:
        self.dlq.labels(reason=reason).inc()

    def dead_letter_dropped(self, reason: str) -> None:
        self.dlq_dropped.labels(reason=reason).inc()

    def set_dlq_pending(self, count: int) -> None:
        self.dlq_pending.set(count)

    def observe_batch(self, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's series so another sidecar's lag is not reported twice."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def commit_result(self, ok: bool) -> None:
        self.commits.labels(result="ok" if ok else "failed").inc()

    def set_connected(self, connected: bool) -> None:
        self.broker_connected.set(1 if connected else 0)

    def set_window_fill(self, model_version: str, segment: Mapping[str, str] | None, fraction: float) -> None:
        self.window_fill.labels(model_version=model_version, segment=segment_label(segment)).set(
            min(1.0, max(0.0, fraction))
        )

    def forget_window(self, model_version: str, segment: Mapping[str, str] | None) -> None:
        """Drop the series of an evicted window (keeps label cardinality bounded)."""
        with contextlib.suppress(KeyError):
            self.window_fill.remove(model_version, segment_label(segment))

    def window_closed(self, model_version: str) -> None:
        self.windows_closed.labels(model_version=model_version).inc()

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    def label_joined(self, outcome: str, count: int = 1) -> None:
        if outcome not in LABEL_JOIN_OUTCOMES:
            raise ValueError(f"unknown label join outcome {outcome!r}; valid: {list(LABEL_JOIN_OUTCOMES)}")
        self.label_join.labels(outcome=outcome).inc(count)

"""The agent's own Prometheus counters and histograms, in one object bound to one registry.

Counters count events as they happen. Gauges that mirror state (lag, window fill, readiness,
the dead-letter backlog) are not here: their owners register ``collectors.StateGauge``s that
read the state at scrape time. Each test builds a fresh ``CollectorRegistry`` and reads values
with ``get_sample_value``; every module registers on the same registry (names prefixed
``drift_agent_``), so one ``/metrics`` shows all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import prometheus_client

PREFIX = "drift_agent_"
# Batches are tens of milliseconds when healthy and seconds when a detector is slow.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABEL_JOIN_OUTCOMES = ("joined", "orphan", "late", "expired", "duplicate")
# Buffers whose evictions are counted here (all are bounded by memory.budget_mib, MEMORY_SHARES in
# agent/settings/groups.py; the KServe pairing dead-letters what it evicts, drift_agent_dlq_total,
# and a lost audit copy is in drift_agent_audit_copies_lost_total).
BOUNDED_BUFFERS = ("label_join", "dead_letters")
NO_SEGMENT = "all"


def segment_label(segment: Mapping[str, str] | None) -> str:
    """A stable label value for a segment: ``k=v,k2=v2`` sorted by key, ``all`` when unsegmented."""
    if not segment:
        return NO_SEGMENT
    return ",".join(f"{key}={segment[key]}" for key in sorted(segment))


def window_fill_samples(
    fill: Mapping[tuple[str, tuple[tuple[str, str], ...]], int], size: int
) -> tuple[tuple[tuple[str, str], float], ...]:
    """The window_fill gauge's samples: records buffered per (version, segment) over the window size."""
    return tuple(
        ((version, segment_label(dict(segment))), min(1.0, max(0.0, count / size)))
        for (version, segment), count in fill.items()
    )


class AgentMetrics:
    """Ingest and windowing counters. Methods are the only way callers touch them."""

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
        self.batch_seconds = prometheus_client.Histogram(
            PREFIX + "batch_seconds",
            "Wall time to process one consumed batch, end to end.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.commits = prometheus_client.Counter(
            PREFIX + "offset_commits_total",
            "Offset commits by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        self.windows_closed = prometheus_client.Counter(
            PREFIX + "windows_closed_total",
            "Windows closed and handed to the detectors, per model version.",
            ["model_version"],
            registry=registry,
        )
        self.label_join = prometheus_client.Counter(
            PREFIX + "label_join_total",
            "Label join outcomes: joined, orphan (no prediction), late (after TTL), "
            "expired (prediction never labelled), duplicate.",
            ["outcome"],
            registry=registry,
        )
        self.buffer_evictions = prometheus_client.Counter(
            PREFIX + "buffer_evicted_total",
            "Entries dropped, oldest first, because a buffer reached its bound (entries, or bytes "
            "derived from memory.budget_mib), by buffer.",
            ["buffer"],
            registry=registry,
        )
        # Read at scrape time from the buffer's own total (set_function): no update on every add.
        self.buffer_bytes = prometheus_client.Gauge(
            PREFIX + "buffer_bytes",
            "Estimated bytes a bounded buffer holds now, by buffer.",
            ["buffer"],
            registry=registry,
        )
        for buffer in BOUNDED_BUFFERS:
            self.buffer_evictions.labels(buffer=buffer)
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

    def observe_batch(self, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def commit_result(self, ok: bool) -> None:
        self.commits.labels(result="ok" if ok else "failed").inc()

    def window_closed(self, model_version: str) -> None:
        self.windows_closed.labels(model_version=model_version).inc()

    def buffer_evicted(self, buffer: str, count: int = 1) -> None:
        self.buffer_evictions.labels(buffer=buffer).inc(count)

    def hold_bytes(self, buffer: str, read: Callable[[], float]) -> None:
        """``read`` gives the bytes ``buffer`` holds; called when Prometheus scrapes."""
        self.buffer_bytes.labels(buffer=buffer).set_function(read)

    def label_joined(self, outcome: str, count: int = 1) -> None:
        if outcome not in LABEL_JOIN_OUTCOMES:
            raise ValueError(f"unknown label join outcome {outcome!r}; valid: {list(LABEL_JOIN_OUTCOMES)}")
        self.label_join.labels(outcome=outcome).inc(count)

"""Gauges that read the agent's current state when Prometheus scrapes (client_python's
custom-collector pattern), instead of being set on every change and removed by hand.

A series exists exactly as long as the state it mirrors: a revoked partition's lag or an evicted
window's fill disappears with the partition or the window, with no ``remove`` to forget.

``read`` runs on the HTTP server's thread while the loop keeps working, so owners hand out
snapshots: immutable values or mappings replaced as a whole (copy on write), never a dict the
loop mutates in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import prometheus_client
from prometheus_client import metrics_core, registry

PREFIX = "drift_agent_"

Sample = tuple[tuple[str, ...], float]
Read = Callable[[], Iterable[Sample]]


@dataclasses.dataclass(frozen=True)
class GaugeSpec:
    """A state gauge's name (without the prefix), help text and labels."""

    name: str
    documentation: str
    labelnames: tuple[str, ...] = ()


# Every state gauge the agent exports, in one list (dashboards and alert rules are checked against it).
CONSUMER_LAG = GaugeSpec(
    "consumer_lag",
    "Records between the group's last committed offset (the fetch position before the first "
    "commit) and the partition's high watermark, per assigned partition: it grows while records "
    "are read but cannot be committed.",
    ("topic", "partition"),
)
KAFKA_CONNECTED = GaugeSpec("kafka_connected", "1 while the consumer holds at least one broker connection.")
DLQ_PENDING = GaugeSpec(
    "dlq_pending", "Dead-letter records waiting in memory for the DLQ topic to accept them."
)
WINDOW_FILL = GaugeSpec(
    "window_fill",
    "Fraction (0..1) of the open window filled, per model version and segment.",
    ("model_version", "segment"),
)
READY = GaugeSpec("ready", "1 when the agent is ready (connected, in its consumer group, reference loaded).")
SEVERITY = GaugeSpec(
    "severity",
    "Worst open incident severity per model and family (0 none, 1 minor, 2 moderate, 3 severe, 4 critical).",
    ("model", "family"),
)
INCIDENTS_OPEN = GaugeSpec("incidents_open", "Open incidents per model.", ("model",))
OVERRIDES_IN_FORCE = GaugeSpec("overrides_in_force", "Active override entries per kind.", ("kind",))
ACTION_QUEUE_DEPTH = GaugeSpec("action_queue_depth", "Actions waiting per executor lane.", ("lane",))
WINDOWS_EVICTED = GaugeSpec(
    "windows_evicted",
    "Windows dropped unevaluated because a model had more (model_version, segment) keys than "
    "window.max_open_windows, per model, since its evaluator started on this agent (only grows).",
    ("model",),
)
STATE_GAUGES = (
    CONSUMER_LAG,
    KAFKA_CONNECTED,
    DLQ_PENDING,
    WINDOW_FILL,
    READY,
    SEVERITY,
    INCIDENTS_OPEN,
    OVERRIDES_IN_FORCE,
    ACTION_QUEUE_DEPTH,
    WINDOWS_EVICTED,
)


class StateGauge(registry.Collector):
    """One gauge family whose samples ``read`` computes at scrape time."""

    def __init__(self, spec: GaugeSpec, read: Read) -> None:
        self.name = PREFIX + spec.name
        self.documentation = spec.documentation
        self.labelnames = spec.labelnames
        self._read = read

    def _family(self) -> metrics_core.GaugeMetricFamily:
        return metrics_core.GaugeMetricFamily(self.name, self.documentation, labels=list(self.labelnames))

    def describe(self) -> Iterable[metrics_core.Metric]:
        # Without describe(), registering would call read() before the state exists.
        return [self._family()]

    def collect(self) -> Iterator[metrics_core.Metric]:
        family = self._family()
        for labels, value in self._read():
            family.add_metric(list(labels), value)
        yield family


def register_gauge(
    metrics_registry: prometheus_client.CollectorRegistry, spec: GaugeSpec, read: Read
) -> StateGauge:
    gauge = StateGauge(spec, read)
    metrics_registry.register(gauge)
    return gauge


def flag(value: Callable[[], bool]) -> Read:
    """A one-sample reader: 1 while ``value()`` holds, else 0."""
    return lambda: [((), 1.0 if value() else 0.0)]

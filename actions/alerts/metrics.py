"""The sinks' Prometheus metrics, registered in the registry the agent passes in."""

from __future__ import annotations

import prometheus_client


class SinkMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.sent = prometheus_client.Counter(
            "drift_agent_notifications_sent",
            "Notifications a receiver accepted, by sink and event (trigger, update, resolve, change).",
            ["sink", "event"],
            registry=registry,
        )
        self.failed = prometheus_client.Counter(
            "drift_agent_notifications_failed",
            "Notifications not delivered, by sink and reason "
            "(http_4xx, http_429, http_5xx, network, deadline, rate_limited, secret, render).",
            ["sink", "reason"],
            registry=registry,
        )
        self.retries = prometheus_client.Counter(
            "drift_agent_sink_retries",
            "Repeated delivery attempts after a temporary failure, by sink.",
            ["sink"],
            registry=registry,
        )

"""Detector results as Prometheus gauges: drift score per feature, dataset drift share,
performance, latency quantiles. One place maps a DetectorResult to series."""

from __future__ import annotations

import prometheus_client

from agent.observability import metrics as metrics_mod
from detectors import base

PREFIX = "drift_agent_"
LABELS = ("model_version", "segment", "detector", "feature")


class DetectorMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.score = prometheus_client.Gauge(
            PREFIX + "drift_score",
            "Latest detector score (compare with drift_threshold; p-values: lower is drift).",
            LABELS,
            registry=registry,
        )
        self.threshold = prometheus_client.Gauge(
            PREFIX + "drift_threshold",
            "Threshold the latest score was compared with.",
            LABELS,
            registry=registry,
        )
        self.drifted = prometheus_client.Gauge(
            PREFIX + "drift_detected", "1 when the latest window drifted, else 0.", LABELS, registry=registry
        )
        self.p_value = prometheus_client.Gauge(
            PREFIX + "drift_p_value",
            "p-value of the latest test, where the test has one.",
            LABELS,
            registry=registry,
        )
        self.effect_size = prometheus_client.Gauge(
            PREFIX + "drift_effect_size", "Effect size beside the p-value.", LABELS, registry=registry
        )
        self.dataset_share = prometheus_client.Gauge(
            PREFIX + "dataset_drift_share",
            "Share of drifted columns in the latest window (dataset-level detectors).",
            ("model_version", "segment", "detector"),
            registry=registry,
        )
        self.extra = prometheus_client.Gauge(
            PREFIX + "detector_value",
            "Named values a detector reports: performance metrics, latency quantiles, bands.",
            (*LABELS, "name"),
            registry=registry,
        )

    def observe(self, results: tuple[base.DetectorResult, ...]) -> None:
        for result in results:
            self._observe_one(result)
            for detail in result.details:
                self._observe_one(detail)
            if result.details:
                self.dataset_share.labels(
                    result.model_version or "", metrics_mod.segment_label(result.segment), result.detector
                ).set(result.score)

    def _observe_one(self, result: base.DetectorResult) -> None:
        labels = (
            result.model_version or "",
            metrics_mod.segment_label(result.segment),
            result.detector,
            result.feature or "",
        )
        self.score.labels(*labels).set(result.score)
        self.threshold.labels(*labels).set(result.threshold)
        self.drifted.labels(*labels).set(1.0 if result.drifted else 0.0)
        if result.p_value is not None:
            self.p_value.labels(*labels).set(result.p_value)
        if result.effect_size is not None:
            self.effect_size.labels(*labels).set(result.effect_size)
        for name, value in result.extras.items():
            self.extra.labels(*labels, name).set(value)

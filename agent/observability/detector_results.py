"""Detector results as Prometheus gauges: drift score per feature, dataset drift share,
performance, latency quantiles. One place maps a DetectorResult to series. A data-quality check
is a detector like the others: ``drift_score{detector="missing_values", feature="amount"}`` is
the share of nulls, ``drift_detected`` whether the check failed.

The latest results of each (model version, segment) are kept and turned into samples at scrape
time; at most ``max_windows`` keys are kept (least recently updated dropped first), so series of
versions and segments that no longer send traffic go away instead of piling up.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import prometheus_client
from prometheus_client import metrics_core, registry

from agent.observability import collectors
from agent.observability import metrics as metrics_mod
from detectors import base

LABELS = ("model_version", "segment", "detector", "feature")
DEFAULT_MAX_WINDOWS = 256
WindowKey = tuple[str, str]

# (suffix, help) of the per-result families, in the order they are exported.
_FAMILIES = (
    ("drift_score", "Latest detector score (compare with drift_threshold; p-values: lower is drift)."),
    ("drift_threshold", "Threshold the latest score was compared with."),
    ("drift_detected", "1 when the latest window drifted, else 0."),
    ("drift_p_value", "p-value of the latest test, where the test has one."),
    ("drift_effect_size", "Effect size beside the p-value."),
)


class DetectorMetrics(registry.Collector):
    def __init__(
        self, metrics_registry: prometheus_client.CollectorRegistry, max_windows: int = DEFAULT_MAX_WINDOWS
    ) -> None:
        self._max_windows = max_windows
        # Replaced as a whole on every update: the scrape thread reads a consistent snapshot.
        self._latest: collections.OrderedDict[WindowKey, tuple[base.DetectorResult, ...]] = (
            collections.OrderedDict()
        )
        metrics_registry.register(self)

    def observe(self, results: tuple[base.DetectorResult, ...]) -> None:
        by_window: dict[WindowKey, list[base.DetectorResult]] = {}
        for result in results:
            key = (result.model_version or "", metrics_mod.segment_label(result.segment))
            by_window.setdefault(key, []).append(result)
        latest = collections.OrderedDict(self._latest)
        for key, window_results in by_window.items():
            # A window's detectors report together; keep the others' latest where one did not run.
            previous = {r.detector: r for r in latest.pop(key, ())}
            previous.update({r.detector: r for r in window_results})
            latest[key] = tuple(previous.values())
        while len(latest) > self._max_windows:
            latest.popitem(last=False)
        self._latest = latest

    def describe(self) -> Iterable[metrics_core.Metric]:
        return list(self._families().values())

    def collect(self) -> Iterator[metrics_core.Metric]:
        families = self._families()
        for (version, segment), results in self._latest.items():
            for result in results:
                for one in (result, *result.details):
                    self._add(families, (version, segment, one.detector, one.feature or ""), one)
                # A quality check's parent counts failed checks, not a share of drifted features.
                if result.details and result.family is not base.DetectorFamily.QUALITY:
                    families["dataset_drift_share"].add_metric(
                        [version, segment, result.detector], result.score
                    )
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, metrics_core.GaugeMetricFamily]:
        prefix = collectors.PREFIX
        families = {
            name: metrics_core.GaugeMetricFamily(prefix + name, help_text, labels=list(LABELS))
            for name, help_text in _FAMILIES
        }
        families["dataset_drift_share"] = metrics_core.GaugeMetricFamily(
            prefix + "dataset_drift_share",
            "Share of drifted columns in the latest window (dataset-level detectors).",
            labels=["model_version", "segment", "detector"],
        )
        families["detector_value"] = metrics_core.GaugeMetricFamily(
            prefix + "detector_value",
            "Named values a detector reports: performance metrics, latency quantiles, bands.",
            labels=[*LABELS, "name"],
        )
        return families

    @staticmethod
    def _add(
        families: dict[str, metrics_core.GaugeMetricFamily],
        labels: tuple[str, ...],
        result: base.DetectorResult,
    ) -> None:
        families["drift_score"].add_metric(list(labels), result.score)
        families["drift_threshold"].add_metric(list(labels), result.threshold)
        families["drift_detected"].add_metric(list(labels), 1.0 if result.drifted else 0.0)
        if result.p_value is not None:
            families["drift_p_value"].add_metric(list(labels), result.p_value)
        if result.effect_size is not None:
            families["drift_effect_size"].add_metric(list(labels), result.effect_size)
        for name, value in result.extras.items():
            families["detector_value"].add_metric([*labels, name], value)

"""Detectors that raised: every failure counted, each (model, detector) logged and audited at most
once per ``interval_s`` with how many failures that entry stands for.

A detector that raises on every record would otherwise write one log and audit line per record;
the counter is what alerts (``DriftAgentDetectorErrors`` in the shipped rules), the audit entry
is what an engineer reads to find the cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import prometheus_client

from agent.observability import audit as audit_mod
from agent.observability import metrics as metrics_mod
from detectors import suite

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0


class FailureReporter:
    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry,
        audit: audit_mod.AuditLog | None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._interval_s = interval_s
        self._clock = clock
        self._counter = prometheus_client.Counter(
            metrics_mod.PREFIX + "detector_errors_total",
            "Detector runs that raised (their result is missing; the other detectors ran), by detector.",
            ["detector"],
            registry=registry,
        )
        # (model, detector) -> (when it was last reported, failures since then not yet reported)
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def report(
        self, model: str, failed: Sequence[suite.Failed], *, model_version: str | None, labelled: bool
    ) -> None:
        now = self._clock()
        for failure in failed:
            self._counter.labels(detector=failure.detector).inc()
            key = (model, failure.detector)
            last, unreported = self._last.get(key, (float("-inf"), 0))
            if now - last < self._interval_s:
                self._last[key] = (last, unreported + 1)
                continue
            self._last[key] = (now, 0)
            log.warning(
                "detector %s raised on a %s window of model %s (version %s): %s; its result is missing, "
                "the other detectors ran%s",
                failure.detector,
                "labelled" if labelled else "prediction",
                model,
                model_version,
                failure.error,
                f" ({unreported} more failures since the last report)" if unreported else "",
            )
            if self._audit is not None:
                self._audit.record(
                    "detector_error",
                    model=model,
                    detector=failure.detector,
                    error=failure.error,
                    model_version=model_version,
                    labelled=labelled,
                    unreported_since_last=unreported,
                )

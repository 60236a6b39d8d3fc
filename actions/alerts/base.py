"""The sink contract and the HTTP machinery every network sink shares.

A sink turns a ``Notification`` into one request in its receiver's wire format. ``send`` never
raises for a receiver's behaviour or bad data: it reports a ``SinkResult``. Log lines carry the
sink name, event, incident id, HTTP status and attempt count, never URLs or keys.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import enum
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from actions import vocabulary
from actions.alerts import delivery, notification, secret_refs
from actions.alerts import metrics as metrics_mod
from actions.alerts import transport as transport_mod

LOG = logging.getLogger("actions.alerts")
DETAIL_CHARS = 200  # of a receiver's error body kept for the log and audit (Slack: "invalid_blocks")


class SinkStatus(enum.StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"  # below the sink's min severity, or an event it has no form for
    RATE_LIMITED = "rate_limited"  # dropped by this sink's own token bucket
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class SinkResult:
    sink: str
    status: SinkStatus
    attempts: int = 0
    http_status: int | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "status": self.status.value,
            "attempts": self.attempts,
            "http_status": self.http_status,
            "reason": self.reason,
        }


class SeverityGate:
    """A sink's ``min_severity``, with resolves judged by what the sink did with the incident.

    A resolve often carries severity "none" (the condition cleared), so it cannot be filtered by
    its own severity: it goes out unless this sink skipped every earlier notification of the
    incident. Unknown incidents (e.g. after a restart) get the resolve: a spare "resolved"
    message costs less than an incident left open at the receiver.
    """

    REMEMBERED = 10_000

    def __init__(self, min_severity: vocabulary.Severity) -> None:
        self.min_severity = min_severity
        self._only_skipped: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._delivered: set[str] = set()
        self._lock = threading.Lock()

    def admits(self, n: notification.Notification) -> bool:
        if n.event is notification.Event.RESOLVE:
            with self._lock:
                return n.incident_id not in self._only_skipped
        return n.severity.rank >= self.min_severity.rank

    def record(self, n: notification.Notification, admitted: bool) -> None:
        with self._lock:
            if n.event is notification.Event.RESOLVE:
                self._only_skipped.pop(n.incident_id, None)
                self._delivered.discard(n.incident_id)
            elif admitted:
                self._only_skipped.pop(n.incident_id, None)
                self._delivered.add(n.incident_id)
            elif n.incident_id not in self._delivered:
                self._only_skipped[n.incident_id] = None
                while len(self._only_skipped) > self.REMEMBERED:
                    self._only_skipped.popitem(last=False)
            if len(self._delivered) > self.REMEMBERED:
                self._delivered.clear()  # forgetting only errs towards sending a resolve

    def skipped(self, sink: str, n: notification.Notification) -> SinkResult:
        why = (
            "the incident's notifications were all below min_severity"
            if n.event is notification.Event.RESOLVE
            else f"below min_severity {self.min_severity.value}"
        )
        return SinkResult(sink, SinkStatus.SKIPPED, reason=why)


class AlertSink(abc.ABC):
    """Delivers notifications to one receiver. Safe to call from several threads."""

    name: str
    gate: SeverityGate

    @property
    def min_severity(self) -> vocabulary.Severity:
        return self.gate.min_severity

    @abc.abstractmethod
    def send(self, n: notification.Notification) -> SinkResult:
        """Deliver ``n`` (or decide not to) and say what happened."""

    @abc.abstractmethod
    def preview(self, n: notification.Notification) -> Mapping[str, Any] | None:
        """The body ``send`` would post, secrets left out (dry-run and audit); None = not sent."""

    def wants(self, n: notification.Notification) -> bool:
        return self.gate.admits(n)


@dataclasses.dataclass
class Runtime:
    """What sinks need from the outside world, injectable for tests."""

    transport: transport_mod.Transport = transport_mod.urllib_transport
    clocks: delivery.Clocks = dataclasses.field(
        default_factory=lambda: delivery.Clocks(time.monotonic, time.sleep, time.time, random.Random())  # noqa: S311 - jitter, not cryptography
    )
    environ: Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ)


@dataclasses.dataclass(frozen=True)
class SinkOptions:
    """What every HTTP sink takes besides its own wire settings."""

    metrics: metrics_mod.SinkMetrics
    runtime: Runtime = dataclasses.field(default_factory=Runtime)
    min_severity: vocabulary.Severity = vocabulary.Severity.NONE
    retry: delivery.RetryPolicy = dataclasses.field(default_factory=delivery.RetryPolicy)
    rate_limit: delivery.TokenBucket | None = None


class HttpSink(AlertSink):
    """A sink that posts JSON. Subclasses say where and what: ``payload`` and ``request``."""

    def __init__(self, name: str, options: SinkOptions) -> None:
        self.name = name
        self.gate = SeverityGate(options.min_severity)
        self._retry = options.retry
        self._bucket = options.rate_limit
        self._metrics = options.metrics
        self._runtime = options.runtime

    @abc.abstractmethod
    def payload(self, n: notification.Notification) -> Mapping[str, Any] | None:
        """The JSON body without secrets; None when this receiver has no form for the event."""

    @abc.abstractmethod
    def request(self, n: notification.Notification, body: Mapping[str, Any]) -> transport_mod.HttpRequest:
        """The request to send, secrets added (may raise ``SecretError``)."""

    def delivered(self, n: notification.Notification, body: Mapping[str, Any]) -> None:
        """Called after the receiver accepted ``body``; sinks that keep state update it here."""

    def preview(self, n: notification.Notification) -> Mapping[str, Any] | None:
        return self.payload(n) if self.wants(n) else None

    def send(self, n: notification.Notification) -> SinkResult:
        prepared = self._prepare(n)
        if isinstance(prepared, SinkResult):
            return prepared
        body, request = prepared
        # Resolves bypass the bucket: a dropped resolve leaves an incident open at the receiver forever.
        limited = self._bucket is not None and n.event is not notification.Event.RESOLVE
        if limited and self._bucket is not None and not self._bucket.try_acquire():
            self._metrics.failed.labels(self.name, "rate_limited").inc()
            LOG.warning(
                "sink %s: rate limit reached, dropped %s for incident %s",
                self.name,
                n.event.value,
                n.incident_id,
            )
            return SinkResult(self.name, SinkStatus.RATE_LIMITED, reason="sink rate limit reached")
        outcome = delivery.deliver(
            request,
            transport=self._runtime.transport,
            policy=self._retry,
            clocks=self._runtime.clocks,
            on_retry=self._metrics.retries.labels(self.name).inc,
        )
        status = outcome.response.status if outcome.response is not None else None
        if outcome.accepted:
            self.delivered(n, body)
            self._metrics.sent.labels(self.name, n.event.value).inc()
            LOG.info(
                "sink %s: delivered %s for incident %s (HTTP %s, %d attempt(s))",
                self.name,
                n.event.value,
                n.incident_id,
                status,
                outcome.attempts,
            )
            return SinkResult(self.name, SinkStatus.SENT, outcome.attempts, status)
        detail = outcome.detail
        if outcome.response is not None and outcome.response.body:
            detail += ": " + outcome.response.body[:DETAIL_CHARS].decode("utf-8", "replace")
        return self._failed(n, outcome.failure or "unknown", detail, outcome.attempts, status)

    def _prepare(
        self, n: notification.Notification
    ) -> tuple[Mapping[str, Any], transport_mod.HttpRequest] | SinkResult:
        """The request to send, or the result that says why nothing will be sent."""
        admitted = self.wants(n)
        self.gate.record(n, admitted)
        if not admitted:
            return self.gate.skipped(self.name, n)
        try:
            body = self.payload(n)
            if body is None:
                return SinkResult(
                    self.name, SinkStatus.SKIPPED, reason=f"no {n.event.value} form for this sink"
                )
            return body, self.request(n, body)
        except secret_refs.SecretError as exc:
            return self._failed(n, "secret", str(exc))
        except (TypeError, ValueError) as exc:
            # A value no JSON encoder takes must fail this send, not the agent's loop.
            return self._failed(n, "render", f"cannot render the payload: {type(exc).__name__}: {exc}")

    def _failed(
        self,
        n: notification.Notification,
        reason: str,
        detail: str,
        attempts: int = 0,
        status: int | None = None,
    ) -> SinkResult:
        self._metrics.failed.labels(self.name, reason).inc()
        LOG.warning(
            "sink %s: %s for incident %s not delivered (%s): %s",
            self.name,
            n.event.value,
            n.incident_id,
            reason,
            detail,
        )
        return SinkResult(self.name, SinkStatus.FAILED, attempts, status, f"{reason}: {detail}")


def json_body(body: Mapping[str, Any] | list[Any]) -> bytes:
    # allow_nan=False: receivers reject NaN tokens, and a payload they reject is worse than an error here.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "drift-agent"}


class NullSink(AlertSink):
    """Accepts everything and only logs it: the default, and the demo's sink."""

    def __init__(
        self,
        name: str = "null",
        *,
        min_severity: vocabulary.Severity = vocabulary.Severity.NONE,
        keep: int = 100,
        metrics: metrics_mod.SinkMetrics | None = None,
    ) -> None:
        self.name = name
        self.gate = SeverityGate(min_severity)
        self._keep = keep
        self._metrics = metrics
        self.received: list[notification.Notification] = []

    def preview(self, n: notification.Notification) -> Mapping[str, Any] | None:
        return n.to_json() if self.wants(n) else None

    def send(self, n: notification.Notification) -> SinkResult:
        admitted = self.wants(n)
        self.gate.record(n, admitted)
        if not admitted:
            return self.gate.skipped(self.name, n)
        self.received = [*self.received[-(self._keep - 1) :], n] if self._keep > 0 else []
        if self._metrics is not None:
            self._metrics.sent.labels(self.name, n.event.value).inc()
        LOG.info(
            "sink %s: %s %s for incident %s: %s",
            self.name,
            n.event.value,
            n.severity.value,
            n.incident_id,
            n.title,
        )
        return SinkResult(self.name, SinkStatus.SENT, reason="null sink: logged only")

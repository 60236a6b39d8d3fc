"""The ``ActionHandler`` the executor calls for ALERT, PAGE and RESOLVE.

It builds one ``Notification`` from the request and fans it out to the routed sinks in
parallel, so a receiver that is down (each delivery is time-bounded) never delays the page
going to the others. Calling it again with the same idempotency key only retries the sinks that
did not take it the first time (within this process; after a restart PagerDuty and
Alertmanager de-duplicate on the incident id, Slack may show the message twice).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, config, notification
from actions.alerts import sink_factory as sink_registry

LOG = logging.getLogger("actions.alerts")
HANDLED_KINDS = (actions_base.ActionKind.ALERT, actions_base.ActionKind.PAGE, actions_base.ActionKind.RESOLVE)
# params["family"] of data-quality incidents (detectors' DetectorFamily.QUALITY; actions import
# nothing of the detectors, the request carries the name).
DATA_QUALITY_FAMILY = "quality"
_REMEMBERED_KEYS = 4096  # idempotency keys whose delivered sinks are kept in memory


class AlertHandler(actions_base.ActionHandler):
    """Notifies the sinks routed for ``kind`` (ALERT, PAGE or RESOLVE)."""

    def __init__(
        self,
        kind: actions_base.ActionKind,
        sinks: Mapping[str, base.AlertSink],
        alerting: config.AlertingConfig,
    ) -> None:
        if kind not in HANDLED_KINDS:
            valid = ", ".join(k.value for k in HANDLED_KINDS)
            raise ValueError(f"AlertHandler handles {valid}, not {kind.value!r}")
        routes = (*alerting.alert_sinks, *alerting.page_sinks, *(alerting.data_owner_sinks or ()))
        missing = [name for name in routes if name not in sinks]
        if missing:
            raise ValueError(f"routes name sinks that were not built: {missing}; built: {sorted(sinks)}")
        self.kind = kind
        self._sinks = dict(sinks)
        self._alerting = alerting
        self._delivered: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def routed(self, request: actions_base.ActionRequest) -> list[str]:
        """Sink names for this request: ``params["sinks"]`` if given, the data owner's for data
        quality (``data_owner_sinks``), else the route for the kind."""
        explicit = request.params.get("sinks")
        if explicit is not None:
            if isinstance(explicit, str) or not isinstance(explicit, Sequence):
                raise notification.NotificationError("params.sinks: give a list of sink names")
            unknown = [name for name in explicit if name not in self._sinks]
            if unknown:
                raise notification.NotificationError(
                    f"params.sinks: unknown sink names {unknown}; configured sinks are {sorted(self._sinks)}"
                )
            return list(dict.fromkeys(str(name) for name in explicit))
        owners = self._alerting.data_owner_sinks
        if owners is not None and request.params.get("family") == DATA_QUALITY_FAMILY:
            return list(owners)
        if self.kind is actions_base.ActionKind.ALERT:
            return list(self._alerting.alert_sinks)
        if self.kind is actions_base.ActionKind.PAGE:
            return list(self._alerting.page_sinks)
        # A resolve must reach wherever the trigger may have gone.
        return list(dict.fromkeys([*self._alerting.alert_sinks, *self._alerting.page_sinks]))

    def notification_for(self, request: actions_base.ActionRequest) -> notification.Notification:
        return notification.from_request(
            request,
            override_hint_template=self._alerting.override_hint_template,
            dashboard_url_template=self._alerting.dashboard_url_template,
            runbook_url=self._alerting.runbook_url,
        )

    def handle(self, request: actions_base.ActionRequest, *, dry_run: bool) -> actions_base.ActionOutcome:
        try:
            n = self.notification_for(request)
            names = self.routed(request)
        except notification.NotificationError as exc:
            LOG.warning("%s for incident %s not sent: %s", request.kind.value, request.incident_id, exc)
            return actions_base.ActionOutcome(actions_base.OutcomeStatus.FAILED, f"bad alert request: {exc}")
        summary = {"incident_id": n.incident_id, "event": n.event.value, "severity": n.severity.value}
        if not names:
            return actions_base.ActionOutcome(
                actions_base.OutcomeStatus.SKIPPED, f"no sinks routed for {self.kind.value}", summary
            )
        if dry_run:
            previews = {name: self._sinks[name].preview(n) for name in names}
            would = ", ".join(name for name, body in previews.items() if body is not None) or "none"
            return actions_base.ActionOutcome(
                actions_base.OutcomeStatus.SKIPPED,
                f"dry-run: would notify {would}",
                {**summary, "previews": previews},
            )
        with self._lock:
            done = set(self._delivered.get(request.idempotency_key, set()))
        pending = [name for name in names if name not in done]
        results = self.notify(n, pending)
        delivered = {r.sink for r in results if r.status in (base.SinkStatus.SENT, base.SinkStatus.SKIPPED)}
        self._remember(request.idempotency_key, done | delivered)
        details: dict[str, Any] = {
            **summary,
            "sinks": [r.to_json() for r in results],
            "already_delivered": sorted(done & set(names)),
        }
        failed = [r for r in results if r.status in (base.SinkStatus.FAILED, base.SinkStatus.RATE_LIMITED)]
        if failed:
            text = "; ".join(f"{r.sink}: {r.reason}" for r in failed)
            return actions_base.ActionOutcome(
                actions_base.OutcomeStatus.FAILED, f"not delivered to {text}", details
            )
        sent = [r.sink for r in results if r.status is base.SinkStatus.SENT]
        return actions_base.ActionOutcome(
            actions_base.OutcomeStatus.SUCCEEDED,
            f"delivered to {', '.join(sent) or 'no sink (all skipped)'}",
            details,
        )

    def notify(self, n: notification.Notification, names: Sequence[str]) -> list[base.SinkResult]:
        """Send ``n`` to the named sinks at once; one result per sink, in the given order."""
        sinks = [self._sinks[name] for name in names]
        if len(sinks) <= 1:
            return [_send(sink, n) for sink in sinks]
        with concurrent.futures.ThreadPoolExecutor(len(sinks), thread_name_prefix="alert-sink") as pool:
            return list(pool.map(lambda sink: _send(sink, n), sinks))

    def _remember(self, key: str, sinks: set[str]) -> None:
        with self._lock:
            self._delivered[key] = sinks
            self._delivered.move_to_end(key)
            while len(self._delivered) > _REMEMBERED_KEYS:
                self._delivered.popitem(last=False)


def _send(sink: base.AlertSink, n: notification.Notification) -> base.SinkResult:
    try:
        return sink.send(n)
    except Exception as exc:
        # A sink bug must cost one notification, not the executor's worker thread.
        LOG.error("sink %s raised %s for incident %s", sink.name, type(exc).__name__, n.incident_id)
        return base.SinkResult(sink.name, base.SinkStatus.FAILED, reason=f"sink error: {type(exc).__name__}")


def build_handlers(
    alerting: config.AlertingConfig,
    *,
    registry: prometheus_client.CollectorRegistry,
    runtime: base.Runtime | None = None,
) -> dict[actions_base.ActionKind, AlertHandler]:
    """The ALERT, PAGE and RESOLVE handlers over one shared set of sinks, ready for the executor."""
    sinks = sink_registry.build_sinks(alerting, registry=registry, runtime=runtime)
    return {kind: AlertHandler(kind, sinks, alerting) for kind in HANDLED_KINDS}

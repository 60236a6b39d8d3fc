"""Alert sinks: Slack, PagerDuty, Alertmanager, a signed generic webhook, and a null sink.

The executor calls ``AlertHandler`` (one per kind: ALERT, PAGE, RESOLVE; ``build_handlers``
makes all three over one set of sinks). ALERT goes to ``alerting.alert_sinks``, PAGE to
``alerting.page_sinks``, RESOLVE to both.

``ActionRequest`` fields used: ``incident_id`` (the dedup key at every receiver),
``severity`` (none|minor|moderate|severe|critical; a sink skips notifications below its
``min_severity``, but a resolve, whatever its severity, goes to every sink that did not skip
all earlier notifications of the incident),
``model_name``, ``model_version``, ``reason`` (default title/summary), ``idempotency_key``.

``ActionRequest.params`` (all optional):
- ``event``: trigger | update | resolve | change. Default: trigger for ALERT/PAGE, resolve for
  RESOLVE. ``update`` = same incident, new facts (escalation); ``change`` = a rollback/deploy
  announcement (PagerDuty change event, a Slack/webhook message; Alertmanager skips it).
- ``title``: one line (default ``[<severity>] <model>: <reason>``); PagerDuty's summary.
- ``summary``: a few sentences (default ``reason``).
- ``drifted``: list of ``{feature, detector, score, threshold, p_value, effect_size,
  higher_is_drift}``; ``DetectorResult.to_json()`` dicts or ``DetectorResult`` objects work as
  they are (a dataset-level result contributes its drifted ``details``).
- ``since``: epoch seconds when the incident started.
- ``action``: what the agent did or will do, e.g. "rolled back to version 3".
- ``override_hint``: how to mute/freeze (default from ``alerting.override_hint_template``).
- ``links``: ``{dashboard: URL, runbook: URL}`` (defaults from the alerting config).
- ``labels``: extra ``{name: value}`` labels (Alertmanager labels, PagerDuty custom details).
- ``sinks``: explicit list of sink names, instead of the route for the kind.
Other params (e.g. the executor's resume marker) are ignored.
"""

from __future__ import annotations

from actions.alerts.base import AlertSink, NullSink, Runtime, SinkResult, SinkStatus
from actions.alerts.config import AlertingConfig
from actions.alerts.handler import AlertHandler, build_handlers
from actions.alerts.notification import DriftItem, Event, Notification, NotificationError
from actions.alerts.sink_factory import UnknownSinkError, build_sinks
from actions.vocabulary import Severity

__all__ = [
    "AlertHandler",
    "AlertSink",
    "AlertingConfig",
    "DriftItem",
    "Event",
    "Notification",
    "NotificationError",
    "NullSink",
    "Runtime",
    "Severity",
    "SinkResult",
    "SinkStatus",
    "UnknownSinkError",
    "build_handlers",
    "build_sinks",
]

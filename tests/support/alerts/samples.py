"""Requests and sink sets the alert tests share."""

from __future__ import annotations

from typing import Any

import prometheus_client

from actions import base as actions_base
from actions.alerts import base, config, notification, sink_factory
from detectors import base as detectors_base

SINCE = 1_699_999_000.0


def drift_result(feature: str, score: float, threshold: float = 0.1) -> detectors_base.DetectorResult:
    return detectors_base.DetectorResult(
        detector="psi",
        family=detectors_base.DetectorFamily.DATA_DRIFT,
        feature=feature,
        statistic="psi",
        score=score,
        threshold=threshold,
        drifted=score > threshold,
        p_value=None,
        effect_size=score / 2,
        reference_size=5000,
        current_size=1000,
    )


def action_request(
    kind: actions_base.ActionKind = actions_base.ActionKind.ALERT,
    *,
    severity: str = "severe",
    incident_id: str = "fraud-model/data_drift/amount",
    key: str = "fraud-model/data_drift/amount:alert:1",
    **params: Any,
) -> actions_base.ActionRequest:
    return actions_base.ActionRequest(
        kind=kind,
        model_name="fraud-model",
        idempotency_key=key,
        incident_id=incident_id,
        severity=severity,
        reason="data drift on 2 features",
        model_version="7",
        params=params,
    )


def standard_params() -> dict[str, Any]:
    return {
        "drifted": [
            drift_result("amount", 0.42).to_json(),
            {
                "feature": "country",
                "detector": "chi2",
                "score": 0.001,
                "threshold": 0.01,
                "p_value": 0.001,
                "effect_size": 0.3,
                "higher_is_drift": False,
            },
        ],
        "since": SINCE,
        "action": "rollback to version 6 planned",
        "links": {
            "dashboard": "https://grafana.example/d/drift",
            "runbook": "https://runbooks.example/drift",
        },
        "labels": {"team": "risk", "namespace": "serving"},
    }


def build(
    sinks: list[dict[str, Any]],
    runtime: base.Runtime,
    metrics_registry: prometheus_client.CollectorRegistry,
    **routes: Any,
) -> tuple[config.AlertingConfig, dict[str, base.AlertSink]]:
    names = [s["name"] for s in sinks]
    alerting = config.AlertingConfig.model_validate(
        {
            "sinks": sinks,
            "alert_sinks": routes.get("alert_sinks", names),
            "page_sinks": routes.get("page_sinks", names),
            "data_owner_sinks": routes.get("data_owner_sinks"),
        }
    )
    return alerting, sink_factory.build_sinks(alerting, registry=metrics_registry, runtime=runtime)


def notification_of(request: actions_base.ActionRequest) -> notification.Notification:
    return notification.from_request(request)

"""From ActionRequest params to a Notification: defaults, DetectorResult input, clear errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

from actions import base as actions_base
from actions import vocabulary
from actions.alerts import notification
from detectors import base as detectors_base
from tests.support.alerts import samples


def test_defaults_come_from_the_request_and_templates() -> None:
    n = notification.from_request(
        samples.action_request(severity="MODERATE"),
        override_hint_template="mute {model} ({incident_id})",
        dashboard_url_template="https://grafana.example/d/drift?var-model={model}&var-version={model_version}",
        runbook_url="https://runbooks.example/drift",
    )
    assert n.event is notification.Event.TRIGGER
    assert n.severity is vocabulary.Severity.MODERATE
    assert n.title == "[moderate] fraud-model: data drift on 2 features"
    assert n.summary == "data drift on 2 features"
    assert n.override_hint == "mute fraud-model (fraud-model/data_drift/amount)"
    assert n.links.dashboard == "https://grafana.example/d/drift?var-model=fraud-model&var-version=7"
    assert n.links.runbook == "https://runbooks.example/drift"
    resolve = notification.from_request(samples.action_request(actions_base.ActionKind.RESOLVE))
    assert resolve.event is notification.Event.RESOLVE


def test_detector_results_are_taken_as_objects_and_dataset_verdicts_expand() -> None:
    per_feature = (
        samples.drift_result("a", 0.5),
        samples.drift_result("b", 0.05),
        samples.drift_result("c", 0.3),
    )
    dataset = detectors_base.DetectorResult(
        detector="share_drifted",
        family=detectors_base.DetectorFamily.DATA_DRIFT,
        feature=None,
        statistic="share",
        score=0.66,
        threshold=0.5,
        drifted=True,
        details=per_feature,
    )
    n = notification.from_request(samples.action_request(drifted=[dataset]))
    assert [item.feature for item in n.drifted] == ["a", "c"]  # b did not drift
    assert [item.feature for item in n.worst_first()] == ["a", "c"]
    assert n.drifted[0].effect_size == 0.25


def test_p_value_signals_sort_by_how_far_below_their_threshold() -> None:
    low_p = notification.DriftItem("x", "ks", score=1e-6, threshold=0.01, higher_is_drift=False)
    high_score = notification.DriftItem("y", "psi", score=0.5, threshold=0.1)
    assert low_p.ratio == pytest.approx(1e4)
    assert notification.Notification(
        "i", notification.Event.TRIGGER, vocabulary.Severity.MINOR, "m", None, "t", "s", (high_score, low_p)
    ).worst_first() == (low_p, high_score)
    assert math.isinf(notification.DriftItem("z", "ks", 0.0, 0.01, higher_is_drift=False).ratio)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"event": "explode"}, "params.event: got 'explode'; use one of trigger, update, resolve, change"),
        ({"drifted": "amount"}, "params.drifted: give a list"),
        ({"drifted": [{"detector": "psi", "score": 1}]}, "params.drifted[0].threshold: missing"),
        (
            {"drifted": [{"detector": "psi", "score": True, "threshold": 1}]},
            "params.drifted[0].score: got True",
        ),
        ({"links": {"grafana": "x"}}, "params.links: unknown keys ['grafana']"),
        ({"labels": ["a"]}, "params.labels: give a mapping"),
        ({"title": 3}, "params.title: got int"),
        ({"since": float("nan")}, "params.since: got nan"),
    ],
)
def test_bad_params_name_the_param_and_the_fix(params: dict[str, Any], message: str) -> None:
    with pytest.raises(notification.NotificationError) as caught:
        notification.from_request(samples.action_request(**params))
    assert message in str(caught.value)


def test_a_missing_severity_is_an_error_not_none() -> None:
    with pytest.raises(notification.NotificationError, match="severity: got None"):
        notification.from_request(samples.action_request(severity=None))  # type: ignore[arg-type]


def test_only_alert_kinds_are_accepted() -> None:
    with pytest.raises(notification.NotificationError, match="kind: got 'rollback'"):
        notification.from_request(samples.action_request(actions_base.ActionKind.ROLLBACK))


def test_a_bad_template_names_its_setting() -> None:
    with pytest.raises(
        notification.NotificationError, match=r"override_hint_template: cannot fill.*\{model\}"
    ):
        notification.from_request(samples.action_request(), override_hint_template="mute {modle}")

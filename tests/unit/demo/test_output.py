"""The demo's lines read as a person writes them."""

from __future__ import annotations

from demo import receiver, ui


def test_repeated_actions_fold_into_one_phrase() -> None:
    said = ui._latest_actions(["canary in_progress", "canary in_progress", "canary in_progress"])
    assert said == "canary in progress (3 updates)"
    assert (
        ui._latest_actions(["alert succeeded", "canary in_progress"]) == "alert succeeded; canary in progress"
    )
    assert ui._latest_actions([]) == "-"


def test_received_notifications_show_emoji_and_name_what_a_resolve_closes() -> None:
    slack = receiver.Received(0.0, "/slack", {"text": ":large_orange_circle: [severe] churn: drift"})
    assert slack.headline() == "Slack: 🟠 [severe] churn: drift"
    resolve = receiver.Received(
        0.0, "/v2/enqueue", {"event_action": "resolve", "dedup_key": "churn/data_drift/all"}
    )
    assert resolve.headline() == "PagerDuty resolve: incident churn/data_drift/all"

"""The agent's alert rules file, its promtool unit tests, and the alerts they must cover.

Shared by the rules tests that need promtool (tests/integration/alerting) and those that only
read the files (tests/unit/actions/alerts).
"""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
RULES = ROOT / "config" / "prometheus-rules.yaml"
RULES_TEST = pathlib.Path(__file__).resolve().parent / "rules_test.yaml"
EXPECTED_ALERTS = {
    "DriftAgentDown",
    "DriftAgentAbsent",
    "DriftAgentNotReady",
    "DriftAgentConsumerLagHigh",
    "DriftAgentDeadLetterGrowth",
    "DriftAgentDeadLettersLost",
    "DriftAgentNotificationsFailing",
    "DriftAgentNotificationsRateLimited",
    "DriftAgentDetectorErrors",
    "DriftAgentAuditCopiesLost",
    "DriftAgentWindowKeysEvicted",
    "DriftAgentBufferEvicting",
}

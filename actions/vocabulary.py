"""Shared vocabulary of the agent and its actions: severities, action kinds, outcomes.

One definition each, imported by ``agent`` and ``actions`` alike (``actions`` never imports the
agent, so the vocabulary lives here, at the bottom of the action layer).
"""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    """How bad a condition is; ordered, so ``worst`` and ``at_least`` compare by rank."""

    NONE = "none"
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_ORDER = (Severity.NONE, Severity.MINOR, Severity.MODERATE, Severity.SEVERE, Severity.CRITICAL)


def worst(*severities: Severity) -> Severity:
    return max(severities, key=lambda s: s.rank, default=Severity.NONE)


class ActionKind(enum.StrEnum):
    LOG = "log"  # record in the audit log, nothing else
    ALERT = "alert"  # notify the alert sinks (Slack, Alertmanager, webhook)
    PAGE = "page"  # notify the paging sinks (PagerDuty) at high urgency
    RESOLVE = "resolve"  # the condition cleared: resolve open notifications
    ROLLBACK = "rollback"  # serve the last healthy model version again
    RETRAIN = "retrain"  # gated retrain, then canary
    CANARY = "canary"  # advance / roll back a running canary


class OutcomeStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # e.g. frozen, pinned, dry-run, cooldown
    IN_PROGRESS = "in_progress"


def counted(count: int, noun: str) -> str:
    """``1 signal``, ``3 signals``: counts in words people write, not ``signal(s)``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

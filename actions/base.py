"""The action plug-in contract: what the policy asks for and what a handler reports back.

Actions never import the agent's loop. The agent's executor looks a handler up by
``ActionKind`` in a registry it is given, records the idempotency key before calling it and
the outcome after (see ``actions.idempotency``).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


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


@dataclasses.dataclass(frozen=True)
class ActionRequest:
    """One thing the policy wants done. ``idempotency_key`` is stable across restarts."""

    kind: ActionKind
    model_name: str
    idempotency_key: str
    incident_id: str
    severity: str
    reason: str
    model_version: str | None = None
    # Free-form parameters for the handler (target version, sink names, incident summary...).
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    status: OutcomeStatus
    message: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class ActionHandler(abc.ABC):
    """Carries out one kind of action. Must be safe to call again with the same key."""

    kind: ActionKind

    @abc.abstractmethod
    def handle(self, request: ActionRequest, *, dry_run: bool) -> ActionOutcome:
        """Do the action (or, with ``dry_run``, only describe what it would do)."""

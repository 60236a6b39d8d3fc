"""The action plug-in contract: what the policy asks for and what a handler reports back.

Actions never import the agent's loop. The agent's executor looks a handler up by
``ActionKind`` in a registry it is given, records the idempotency key before calling it and
the outcome after (see ``actions.idempotency``).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

from actions.vocabulary import ActionKind, OutcomeStatus

__all__ = ["ActionHandler", "ActionKind", "ActionOutcome", "ActionRequest", "OutcomeStatus"]


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


# An IN_PROGRESS outcome's detail: the epoch time before which the executor need not ask again.
RETRY_AT = "retry_at"


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

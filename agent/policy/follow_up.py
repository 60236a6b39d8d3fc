"""What follows a finished action: a retrain whose candidate passed its gates goes to a canary.

A policy rule, kept with the policy: the executor asks it after every outcome and submits what
it returns under the original request's idempotency key (plus ``/canary``), so a restart that
sees the retrain again asks for the same canary, never a second one.
"""

from __future__ import annotations

from actions import base as actions_base


def canary_request(
    done_request: actions_base.ActionRequest, outcome: actions_base.ActionOutcome
) -> actions_base.ActionRequest | None:
    """The CANARY request that follows a successful retrain (None for anything else)."""
    if done_request.kind != actions_base.ActionKind.RETRAIN:
        return None
    if outcome.status != actions_base.OutcomeStatus.SUCCEEDED:
        return None
    candidate = outcome.details.get("candidate_version")
    if candidate is None:
        return None
    return actions_base.ActionRequest(
        kind=actions_base.ActionKind.CANARY,
        model_name=done_request.model_name,
        idempotency_key=f"{done_request.idempotency_key}/canary",
        incident_id=done_request.incident_id,
        severity=done_request.severity,
        reason=f"retrained version {candidate} passed its gates: canary",
        params={"candidate_version": str(candidate)},
    )

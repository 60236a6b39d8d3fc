"""When a failed action is tried again, and when the executor gives up and asks for a human.

Handlers mark a failure ``retryable`` when the request was fine and the other side was not
(an API server or MLflow unreachable, a 5xx, a 429). Such a failure is not final: the key stays
pending in the journal, with the time of its next try, and the executor hands it back to its
handler (``resume=True``) once that time has come, backing off exponentially. After
``max_attempts`` tries it is final: FAILED, with a recommendation to page, so the on-call
engineer hears about a remediation that could not happen.

Pure: the executor supplies the clock and the attempt count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from actions import base

RETRY_AT = base.RETRY_AT
PAGE = "page"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 10.0
    max_backoff_s: float = 300.0

    def backoff_s(self, attempt: int) -> float:
        """Wait after the ``attempt``-th failed try: doubles each time, capped."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, attempt - 1)))

    def judge(self, outcome: base.ActionOutcome, attempt: int, now: float) -> base.ActionOutcome:
        """The outcome to journal for the ``attempt``-th try: a retryable failure becomes a wait
        (in progress, with ``retry_at``) until the last attempt, which fails for good and pages."""
        if outcome.status is not base.OutcomeStatus.FAILED or not outcome.details.get("retryable"):
            return outcome
        if attempt < self.max_attempts:
            retry_at = now + self.backoff_s(attempt)
            return base.ActionOutcome(
                base.OutcomeStatus.IN_PROGRESS,
                f"attempt {attempt}/{self.max_attempts} failed, trying again in "
                f"{retry_at - now:.0f} s: {outcome.message}",
                {**outcome.details, RETRY_AT: retry_at, "attempt": attempt},
            )
        return base.ActionOutcome(
            base.OutcomeStatus.FAILED,
            f"gave up after {attempt} attempts: {outcome.message}",
            {**outcome.details, "gave_up_after": attempt, "recommendation": PAGE},
        )


def waiting_until(outcome: Mapping[str, Any] | None, now: float) -> float | None:
    """The time a journaled retry wait ends, while it has not ended; None otherwise."""
    if outcome is None or outcome.get("status") != base.OutcomeStatus.IN_PROGRESS.value:
        return None
    retry_at = (outcome.get("details") or {}).get(RETRY_AT)
    if not isinstance(retry_at, int | float) or retry_at <= now:
        return None
    return float(retry_at)

"""The null action handler: stands in for a remediation that is not configured.

A policy may ask for rollback or retrain on a cluster where no registry is set up yet. Starting
anyway and reporting every such request as skipped, with the setting that would enable it, is
more useful than refusing to start (alerts still work) and more honest than a silent no-op.
"""

from __future__ import annotations

from actions import base


class NotConfiguredHandler(base.ActionHandler):
    def __init__(self, kind: base.ActionKind, hint: str) -> None:
        self.kind = kind
        self.hint = hint

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        return base.ActionOutcome(
            status=base.OutcomeStatus.SKIPPED,
            message=f"{self.kind.value} is not configured: {self.hint}",
            details={"reason": "not_configured"},
        )

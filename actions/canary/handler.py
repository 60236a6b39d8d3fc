"""The ``ActionHandler`` for ``ActionKind.CANARY``: start a canary of ``params["candidate_version"]``.

The handler only starts canaries and reports on them; the agent's loop moves them on with
``CanaryController.tick`` as windows close. Called again with the same idempotency key (the
executor does so while the outcome is IN_PROGRESS) it reports the same canary: SUCCEEDED once
promoted, FAILED once rolled back or abandoned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions import base, model_registry
from actions.canary import controller as controller_mod
from actions.canary import state as state_mod
from actions.targets import base as target_base

_FINAL_STATUS = {
    state_mod.Phase.PROMOTED: base.OutcomeStatus.SUCCEEDED,
    state_mod.Phase.ROLLED_BACK: base.OutcomeStatus.FAILED,
    state_mod.Phase.ABANDONED: base.OutcomeStatus.FAILED,
}


def _outcome(status: base.OutcomeStatus, reason: str, message: str, **details: Any) -> base.ActionOutcome:
    return base.ActionOutcome(status=status, message=message, details={"reason": reason, **details})


def candidate_param(params: Mapping[str, Any]) -> str:
    value = params.get("candidate_version")
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ValueError(
            f"params.candidate_version must name the model version to canary, like '7'; got {value!r}"
        )
    return str(value).strip()


class CanaryHandler(base.ActionHandler):
    kind = base.ActionKind.CANARY

    def __init__(self, controller: controller_mod.CanaryController) -> None:
        self._controller = controller

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        try:
            candidate = self._candidate(request)
            if dry_run:
                return self._preview(candidate)
            result = self._controller.start(candidate, canary_id=request.idempotency_key)
        except controller_mod.CanaryBusyError as exc:
            return _outcome(base.OutcomeStatus.SKIPPED, "canary_running", str(exc))
        except controller_mod.CanaryPlanError as exc:  # steps this target cannot serve
            return _outcome(base.OutcomeStatus.FAILED, "plan_refused", str(exc))
        except ValueError as exc:  # a malformed request, or the candidate already serves
            return _outcome(base.OutcomeStatus.FAILED, "invalid_request", str(exc))
        except (target_base.TargetError, model_registry.RegistryError) as exc:
            reason = "unavailable" if exc.retriable else "rejected"
            return _outcome(base.OutcomeStatus.FAILED, reason, str(exc), retryable=exc.retriable)
        return self._report(result)

    def _candidate(self, request: base.ActionRequest) -> str:
        if request.model_name != self._controller.model_name:
            raise ValueError(
                f"model_name {request.model_name!r} is not the model this canary controller runs "
                f"({self._controller.model_name!r}); check registry.registered_model_name"
            )
        return candidate_param(request.params)

    def _preview(self, candidate: str) -> base.ActionOutcome:
        target = self._controller.target
        stable = target.current_version()
        shares = controller_mod.plan_shares(target, self._controller.config)
        first = self._controller.config.steps[0]
        uri = self._controller.registry.model_uri(candidate)
        preview = target.preview_set_traffic(target_base.TrafficSplit(stable, candidate, first), uri)
        return _outcome(
            base.OutcomeStatus.SKIPPED,
            "dry_run",
            f"would start a canary of {candidate} against {stable} at {shares[0].describe()}: {preview}",
            dry_run=True,
            stable_version=stable,
            candidate_version=candidate,
        )

    def _report(self, result: controller_mod.TickResult) -> base.ActionOutcome:
        state = result.state
        assert state is not None  # start always leaves a state
        details = dict(controller_mod.describe(state))
        if result.error is not None:
            details["retry"] = result.error
        status = _FINAL_STATUS.get(state.phase, base.OutcomeStatus.IN_PROGRESS)
        message = f"canary {state.canary_id}: {state.phase.value} at {state.percent}%" + (
            f": {state.reason}" if state.reason else ""
        )
        return _outcome(status, state.phase.value, message, **details)

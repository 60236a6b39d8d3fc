"""The ticker around ``step``: load the state, step, carry the actions out, save.

Crash safety: the actions ``step`` asks for are saved into the state as ``pending`` *before*
they are carried out, and removed once they are; a restarted controller carries out whatever is
still pending before it steps again. Every action is idempotent (a target write to what it
already serves is a no-op, aliases are set to fixed values, registry history is written with
the time the action was decided), so carrying one out twice is harmless; alerts carry a stable
idempotency key so receivers de-duplicate them.

Registry aliases: ``challenger`` names the candidate while it runs. Promotion sets ``champion``
to the candidate and ``previous`` to the old champion; a rollback puts ``champion`` and
``previous`` back to what they were when the canary started and tags the candidate
``rolled_back`` (so ``last_healthy_version`` never picks it). Either way ``challenger`` goes back
to the other version it named before the canary; if it named none (or the candidate itself) it
is removed, where the registry can remove aliases (``delete_alias``; ``ModelRegistry`` cannot
yet, so there it keeps naming the candidate, whose health tag tells what became of it).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from actions import base, model_registry
from actions.canary import config as config_mod
from actions.canary import state as state_mod
from actions.canary import step as step_mod
from actions.targets import base as target_base

LOG = logging.getLogger(__name__)

# Registry failures that later calls may fix: the pending actions stay and are retried.
_RETRY_LATER = (target_base.TargetError, model_registry.RegistryError)


@runtime_checkable
class AliasRemover(Protocol):
    def delete_alias(self, alias: model_registry.Alias | str) -> None: ...


class CanaryBusyError(RuntimeError):
    """Another canary of this model is still running."""


class CanaryPlanError(ValueError):
    """The target cannot serve the configured steps close enough to their shares."""


def plan_shares(
    target: target_base.DeploymentTarget, config: config_mod.CanaryConfig
) -> tuple[target_base.ServedShare, ...]:
    """What each step would really serve; refuses steps off by more than max_share_error_pct."""
    shares = tuple(target.served_percent(percent) for percent in config.steps)
    off = [share for share in shares if abs(share.served - share.asked) > config.max_share_error_pct]
    if off:
        served = ", ".join(share.describe() for share in off)
        raise CanaryPlanError(
            f"{target.describe()} cannot serve canary.steps {config.steps} within "
            f"{config.max_share_error_pct:g} points (canary.max_share_error_pct): {served}. Use steps it can "
            "serve, give the Deployment more replicas (shares move in steps of 100/replicas), or raise "
            "canary.max_share_error_pct to accept them"
        )
    return shares


@dataclasses.dataclass(frozen=True)
class TickResult:
    state: state_mod.CanaryState | None
    actions: tuple[state_mod.CanaryAction, ...] = ()  # what step asked for on this tick
    alerts: tuple[base.ActionRequest, ...] = ()  # alert requests built (and sent, with a handler)
    error: str | None = None  # an action could not be carried out; it stays pending


class CanaryController:
    """Runs the canaries of one registered model on one deployment target, one at a time."""

    def __init__(
        self,
        target: target_base.DeploymentTarget,
        model_registry: model_registry.ModelRegistry,
        store: state_mod.StateStore | pathlib.Path,
        config: config_mod.CanaryConfig,
        clock: Callable[[], float] = time.time,
        *,
        alert_handler: base.ActionHandler | None = None,
    ) -> None:
        self.target = target
        self.registry = model_registry
        # A path means a file of one agent's; the agent passes a store every replica shares.
        self.store = state_mod.FileStateStore(store) if isinstance(store, pathlib.Path) else store
        self.config = config
        self._clock = clock
        self._alert_handler = alert_handler
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.registry.model_name

    def state(self) -> state_mod.CanaryState | None:
        return self.store.load()

    # -- starting ---------------------------------------------------------------------------------

    def start(self, candidate_version: str, *, canary_id: str | None = None) -> TickResult:
        """Start a canary of ``candidate_version`` against what serves now (idempotent per id)."""
        candidate = target_base.require_text(candidate_version, "candidate_version")
        with self._lock:
            existing = self.state()
            if existing is not None and (
                existing.canary_id == canary_id
                or (not existing.finished and existing.candidate_version == candidate)
            ):
                return self._resume_pending(existing, ())
            if existing is not None and not existing.finished:
                raise CanaryBusyError(
                    f"canary {existing.canary_id} of version {existing.candidate_version} is running at "
                    f"{existing.percent}% ({existing.phase.value}); abort it with an override "
                    "(canary: [{model: ..., command: abort}]) before starting another"
                )
            now = self._clock()
            stable = self.target.current_version()
            shares = plan_shares(self.target, self.config)
            state, actions = step_mod.begin(
                canary_id=canary_id or f"{self.model_name}/{candidate}/{now:.0f}",
                model_name=self.model_name,
                stable_version=stable,
                candidate_version=candidate,
                config=self.config,
                now=now,
                stable_model_uri=self.registry.model_uri(stable),
                candidate_model_uri=self.registry.model_uri(candidate),
                aliases_before=self.registry.aliases(),
                shares=shares,
            )
            LOG.info("canary %s: %s -> %s starts", state.canary_id, stable, candidate)
            return self._commit(state, actions)

    # -- ticking ----------------------------------------------------------------------------------

    def tick(self, observations: state_mod.Observations) -> TickResult:
        """One step of the running canary; without one, nothing happens."""
        with self._lock:
            state = self.state()
            if state is None or state.finished:
                return TickResult(state)
            if state.pending:  # left over from a crash or a failed write: finish those first
                resumed = self._carry_out(state)
                if resumed.error is not None or resumed.state is None:
                    return resumed
                state = resumed.state
            try:
                observations = self._with_target_view(observations)
            except target_base.TargetError as exc:
                return TickResult(state, error=f"{self.target.describe()}: {exc}")
            state, actions = step_mod.step(state, observations, self.config, self._clock())
            return self._commit(state, actions)

    def _with_target_view(self, observations: state_mod.Observations) -> state_mod.Observations:
        rollout = observations.rollout
        message = observations.rollout_message
        if rollout is None:
            status = self.target.rollout_status()
            rollout, message = status.phase, status.message
        serving = observations.serving_version or self.target.current_version()
        return dataclasses.replace(
            observations, rollout=rollout, rollout_message=message, serving_version=serving
        )

    # -- carrying actions out ---------------------------------------------------------------------

    def _commit(self, state: state_mod.CanaryState, actions: list[state_mod.CanaryAction]) -> TickResult:
        effects = tuple(action for action in actions if not isinstance(action, state_mod.Wait))
        state = dataclasses.replace(state, pending=(*state.pending, *effects))
        self.store.save(state)  # the intention is durable before anything changes
        return self._resume_pending(state, tuple(actions))

    def _resume_pending(
        self, state: state_mod.CanaryState, actions: tuple[state_mod.CanaryAction, ...]
    ) -> TickResult:
        result = self._carry_out(state)
        return dataclasses.replace(result, actions=actions)

    def _carry_out(self, state: state_mod.CanaryState) -> TickResult:
        alerts: list[base.ActionRequest] = []
        while state.pending:
            action = state.pending[0]
            try:
                alert = self._apply(state, action)
            except _RETRY_LATER as exc:
                message = f"canary {state.canary_id}: {action.kind} not done yet, retried next tick: {exc}"
                LOG.warning("%s", message)
                return TickResult(state, alerts=tuple(alerts), error=message)
            if alert is not None:
                alerts.append(alert)
            state = dataclasses.replace(state, pending=state.pending[1:])
            self.store.save(state)
        return TickResult(state, alerts=tuple(alerts))

    def _apply(
        self, state: state_mod.CanaryState, action: state_mod.CanaryAction
    ) -> base.ActionRequest | None:
        if isinstance(action, state_mod.SetTraffic):
            split = target_base.TrafficSplit(state.stable_version, state.candidate_version, action.percent)
            self.target.set_traffic(split, state.candidate_model_uri)
            self._set_alias(model_registry.Alias.CHALLENGER, state.candidate_version)
        elif isinstance(action, state_mod.Promote):
            self.target.set_version(state.candidate_version, state.candidate_model_uri)
            self.registry.mark_deployed(state.candidate_version, at=action.at)
            self._set_alias(model_registry.Alias.CHAMPION, state.candidate_version)
            self._set_alias(model_registry.Alias.PREVIOUS, state.stable_version)
            self._restore_challenger(state)
        elif isinstance(action, state_mod.Rollback):
            self.target.set_version(state.stable_version, state.stable_model_uri)
            self.registry.mark_rolled_back(state.candidate_version, action.reason, at=action.at)
            for alias in (model_registry.Alias.CHAMPION, model_registry.Alias.PREVIOUS):
                before = state.aliases_before.get(alias.value)
                if before is not None:
                    self._set_alias(alias, before)
            self._restore_challenger(state)
        elif isinstance(action, state_mod.Alert):
            return self._alert(state, action)
        return None

    def _set_alias(self, alias: model_registry.Alias, version: str) -> None:
        if self.registry.aliases().get(alias.value) != version:
            self.registry.set_alias(alias, version)

    def _restore_challenger(self, state: state_mod.CanaryState) -> None:
        before = state.aliases_before.get(model_registry.Alias.CHALLENGER.value)
        if before is not None and before != state.candidate_version:
            self._set_alias(model_registry.Alias.CHALLENGER, before)
            return
        current = self.registry.aliases().get(model_registry.Alias.CHALLENGER.value)
        if current != state.candidate_version:
            return
        if isinstance(self.registry, AliasRemover):
            self.registry.delete_alias(model_registry.Alias.CHALLENGER)
        else:
            LOG.info(
                "canary %s: alias challenger still names %s (this registry cannot remove aliases); its "
                "health tag says what became of it",
                state.canary_id,
                state.candidate_version,
            )

    def _alert(self, state: state_mod.CanaryState, alert: state_mod.Alert) -> base.ActionRequest:
        request = alert_request(state, alert)
        if self._alert_handler is None:
            LOG.warning("canary alert (no alert handler configured): %s", alert.reason)
            return request
        # An alert that cannot be delivered must not hold the canary back: the outcome is logged.
        outcome = self._alert_handler.handle(request, dry_run=False)
        if outcome.status is base.OutcomeStatus.FAILED:
            LOG.warning(
                "canary %s: alert %s not delivered: %s", state.canary_id, alert.event, outcome.message
            )
        return request


def alert_request(state: state_mod.CanaryState, alert: state_mod.Alert) -> base.ActionRequest:
    """The ALERT request for one canary event; its key is stable so a replay is de-duplicated."""
    change = alert.event in (state_mod.Phase.PROMOTED.value, state_mod.Phase.ROLLED_BACK.value)
    return base.ActionRequest(
        kind=base.ActionKind.ALERT,
        model_name=state.model_name,
        idempotency_key=f"canary/{state.canary_id}/{alert.event}",
        incident_id=f"{state.model_name}/canary/{state.candidate_version}",
        severity=alert.severity,
        reason=alert.reason,
        model_version=state.candidate_version,
        params={
            "event": "change" if change else "trigger",
            "summary": alert.reason,
            "action": "rollback" if alert.event == state_mod.Phase.ROLLED_BACK.value else "canary",
            "labels": {"canary_id": state.canary_id, "stable_version": state.stable_version},
        },
    )


def describe(state: state_mod.CanaryState) -> Mapping[str, Any]:
    """The state in a few fields, for action outcomes and the audit log."""
    return {
        "canary_id": state.canary_id,
        "phase": state.phase.value,
        "percent": state.percent,
        "served_percent": state.share.served if state.share is not None else state.percent,
        "stable_version": state.stable_version,
        "candidate_version": state.candidate_version,
        "failed_checks": state.failed_checks,
        "waiting": state.waiting,
        "why": state.reason,
    }

"""The remediation handlers, built from the settings: rollback, retrain and canary.

Without a model registry none of them can act; each is then a handler that says what to set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from actions import base as actions_base
from actions import model_registry, targets
from actions import null as null_actions
from actions import rollback as rollback_mod
from actions.canary import controller as canary_controller
from actions.canary import handler as canary_handler
from actions.canary import state as canary_state
from actions.retrain import handler as retrain_handler
from agent import policy
from agent import settings as settings_mod
from agent.respond import training as training_mod

REMEDIATION_KINDS = (
    actions_base.ActionKind.ROLLBACK,
    actions_base.ActionKind.RETRAIN,
    actions_base.ActionKind.CANARY,
)


@dataclasses.dataclass
class Remediation:
    """The remediation handlers and what they share (None where not configured)."""

    handlers: dict[actions_base.ActionKind, actions_base.ActionHandler]
    registry: model_registry.ModelRegistry | None
    training: training_mod.TrainingBuffer | None = None
    canary: canary_controller.CanaryController | None = None


def build_remediation(
    settings: settings_mod.AgentSettings,
    *,
    clock: Callable[[], float],
    canary_store: Callable[[str], canary_state.StateStore],
    alert_handler: actions_base.ActionHandler | None = None,
) -> Remediation:
    """``canary_store(model)``: where the canary of ``model`` keeps its state."""
    uri = settings.registry.tracking_uri
    if uri is None:
        hint = "set registry.tracking_uri (and target.*) to enable rollback, retrain and canary"
        return Remediation(
            {kind: null_actions.NotConfiguredHandler(kind, hint) for kind in REMEDIATION_KINDS}, None
        )
    model_name = settings.registry.registered_model_name or settings.runtime.model_name
    registry = model_registry.ModelRegistry(
        uri, model_name, min_healthy_windows=settings.registry.min_healthy_windows, clock=clock
    )
    cluster = settings.target.kind != "local" or settings.retrain.runner.kind == "kubernetes"
    api_client = targets.api_client_from(settings.target) if cluster else None
    target = targets.build_target(settings.target, api_client=api_client, clock=clock)
    rollback = rollback_mod.RollbackHandler(
        registry,
        target,
        clock=clock,
        cooldown_s=settings.registry.cooldown_s,
        circuit_breaker_window_s=settings.registry.circuit_breaker_window_s,
        rollout_timeout_s=settings.registry.rollout_timeout_s,
    )
    training = training_mod.TrainingBuffer(
        settings.retrain.strategy.max_rows, max_bytes=settings.memory.bytes_for("retrain")
    )
    retrain = retrain_handler.RetrainHandler.from_settings(
        settings.retrain,
        model_name=model_name,
        provider=training.rows,
        registry_tracking_uri=uri,
        registered_model_name=model_name,
        api_client=api_client,
    )
    canary = canary_controller.CanaryController(
        target,
        registry,
        canary_store(model_name),
        settings.canary,
        clock,
        alert_handler=alert_handler,
    )
    return Remediation(
        {
            actions_base.ActionKind.ROLLBACK: rollback,
            actions_base.ActionKind.RETRAIN: retrain,
            actions_base.ActionKind.CANARY: canary_handler.CanaryHandler(canary),
        },
        registry,
        training,
        canary,
    )


def build_handlers(
    policy_config: policy.PolicyConfig,
    alert_handlers: dict[actions_base.ActionKind, actions_base.ActionHandler],
    configured: Remediation,
) -> dict[actions_base.ActionKind, actions_base.ActionHandler]:
    """Every kind the policy can plan gets a handler; one this build lacks says so when asked."""
    handlers = {**alert_handlers, **configured.handlers}
    for kind in policy.action_kinds(policy_config) - set(handlers) - {actions_base.ActionKind.LOG}:
        handlers[kind] = null_actions.NotConfiguredHandler(kind, f"no handler for {kind.value} in this build")
    return handlers

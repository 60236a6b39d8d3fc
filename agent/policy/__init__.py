"""The policy: policy-file schema, state, judging and planning, and the stateful decider."""

from __future__ import annotations

from agent.policy.incidents import IncidentState
from agent.policy.schema import (
    DEFAULT_OVERRIDE_HINT,
    DEFAULT_POLICY_PATH,
    ActionPlans,
    Bands,
    FlappingConfig,
    PlanStep,
    PolicyConfig,
    PolicyError,
    RemediationBudget,
    RemediationConfig,
    RemediationKind,
    Rule,
    action_kinds,
    default_rules,
    load_policy,
    parse_policy,
)
from agent.policy.state import MAX_FORCED_IDS_KEPT, Decision, IncidentReport, PolicyState, Suppressed
from agent.policy.units import Unit, units_of
from agent.policy.window import decide

__all__ = [
    "DEFAULT_OVERRIDE_HINT",
    "DEFAULT_POLICY_PATH",
    "MAX_FORCED_IDS_KEPT",
    "ActionPlans",
    "Bands",
    "Decision",
    "FlappingConfig",
    "IncidentReport",
    "IncidentState",
    "PlanStep",
    "PolicyConfig",
    "PolicyError",
    "PolicyState",
    "RemediationBudget",
    "RemediationConfig",
    "RemediationKind",
    "Rule",
    "Suppressed",
    "Unit",
    "action_kinds",
    "decide",
    "default_rules",
    "load_policy",
    "parse_policy",
    "units_of",
]

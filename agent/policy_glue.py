"""Holds the policy's state between windows and turns decisions into replay events.

``policy.decide`` is pure; this is the one place that keeps its state and reads the override
file's current contents, so the engine and the replay see a plain ``(results, now) -> Decision``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent import overrides, policy
from agent import settings as settings_mod
from detectors import base

if TYPE_CHECKING:
    from agent import engine as engine_mod


class PolicyDecider:
    """``decide`` with its state; ``state`` goes into checkpoints as JSON."""

    def __init__(
        self,
        config: policy.PolicyConfig,
        overrides_state: Callable[[], overrides.OverrideState],
        state: policy.PolicyState | None = None,
    ) -> None:
        self.config = config
        self.overrides_state = overrides_state
        self.state = state or policy.PolicyState()

    def __call__(self, results: Sequence[base.DetectorResult], now: float) -> policy.Decision:
        self.state, decision = policy.decide(self.state, results, self.config, self.overrides_state(), now)
        return decision


def empty_overrides() -> overrides.OverrideState:
    return overrides.OverrideState()


def build_decider(
    settings: settings_mod.AgentSettings,
    *,
    overrides_state: Callable[[], overrides.OverrideState] = empty_overrides,
) -> PolicyDecider:
    config = policy.load_policy(settings.policy.path, model_name=settings.runtime.model_name)
    return PolicyDecider(config, overrides_state)


def decision_event(evaluation: engine_mod.Evaluation) -> dict[str, Any]:
    """The contract's event for one decision (DESIGN.md, Replay / backtest)."""
    decision = evaluation.decision
    assert isinstance(decision, policy.Decision)
    worst = max(
        (r for r in decision.incidents if r.status == "open"), key=lambda r: r.severity.rank, default=None
    )
    score = worst.max_score_ratio if worst is not None and worst.max_score_ratio is not None else 0.0
    return {
        "type": "decision",
        "record_index": evaluation.window.last_record_index,
        "detector": "policy",
        "feature": None,
        "score": score,
        "threshold": 1.0,
        "drifted": decision.severity != policy.Severity.NONE,
        "severity": decision.severity.value,
        "action": decision.actions[0].kind.value if decision.actions else None,
        "actions": [
            {"kind": a.kind.value, "incident_id": a.incident_id, "idempotency_key": a.idempotency_key}
            for a in decision.actions
        ],
        "rule_id": decision.rule_id,
        "incidents": [r.incident_id for r in decision.incidents if r.status == "open"],
        "model_version": evaluation.window.model_version,
        "labelled_window": evaluation.labelled,
    }

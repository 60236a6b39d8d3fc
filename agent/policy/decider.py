"""Holds the policy's state between windows.

``policy.decide`` is pure; this is the one place that keeps its state and reads the override
file's current contents, so the engine and the replay see a plain ``(results, now) -> Decision``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent import overrides, policy
from agent import settings as settings_mod
from detectors import base


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
    config: settings_mod.PolicySettings,
    *,
    model_name: str,
    overrides_state: Callable[[], overrides.OverrideState] = empty_overrides,
) -> PolicyDecider:
    return PolicyDecider(policy.load_policy(config.path, model_name=model_name), overrides_state)

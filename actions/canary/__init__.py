"""Canary redeploys: a pure ``step`` over persisted state, a ticker, and the CANARY action handler.

``step`` (``actions.canary.step``) decides; ``CanaryController`` (``actions.canary.controller``)
loads, steps, carries the actions out on the deployment target and the model registry, and
saves; ``build_observations`` (``actions.canary.observe``) turns the agent's per-version windows
into the step's input. Import the submodules for the rest.
"""

from __future__ import annotations

from actions.canary.config import CanaryChecks, CanaryConfig
from actions.canary.state import CanaryState, Command, Observations, Phase, VersionSummary

__all__ = [
    "CanaryChecks",
    "CanaryConfig",
    "CanaryState",
    "Command",
    "Observations",
    "Phase",
    "VersionSummary",
]

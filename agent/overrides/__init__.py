"""On-call overrides: the override file's schema, the state it puts in force, and its watcher."""

from __future__ import annotations

from agent.overrides.schema import (
    Acknowledge,
    BudgetReset,
    CanaryControl,
    DryRun,
    ForceAction,
    Freeze,
    Mute,
    OverrideError,
    OverrideFile,
    Pin,
    ThresholdOverride,
    diff,
    glob_matches,
    parse,
)
from agent.overrides.state import NOTIFICATION_KINDS, VERSION_CHANGING_KINDS, OverrideState, Skip
from agent.overrides.watcher import OverrideWatcher

__all__ = [
    "NOTIFICATION_KINDS",
    "VERSION_CHANGING_KINDS",
    "Acknowledge",
    "BudgetReset",
    "CanaryControl",
    "DryRun",
    "ForceAction",
    "Freeze",
    "Mute",
    "OverrideError",
    "OverrideFile",
    "OverrideState",
    "OverrideWatcher",
    "Pin",
    "Skip",
    "ThresholdOverride",
    "diff",
    "glob_matches",
    "parse",
]

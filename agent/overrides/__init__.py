"""On-call overrides: the override file, its state, and the watcher that reloads it."""

from __future__ import annotations

from agent.overrides.schema import (
    NOTIFICATION_KINDS,
    VERSION_CHANGING_KINDS,
    Acknowledge,
    CanaryControl,
    DryRun,
    ForceAction,
    Freeze,
    Mute,
    OverrideError,
    OverrideFile,
    OverrideState,
    OverrideWatcher,
    Pin,
    Skip,
    ThresholdOverride,
    diff,
    parse,
)

__all__ = [
    "NOTIFICATION_KINDS",
    "VERSION_CHANGING_KINDS",
    "Acknowledge",
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
    "parse",
]

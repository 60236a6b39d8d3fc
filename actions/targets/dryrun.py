"""Dry-run as a real mode: wrap any target; reads pass through, writes become intentions.

Each intended write is first previewed by the wrapped target (a server-side dry run where the
target has one), so a dry-run agent still reports a write that would be refused, and is then
kept in ``intentions`` and logged. Nothing the serving side reads changes.
"""

from __future__ import annotations

import dataclasses
import logging

from actions.targets import base

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Intention:
    operation: str  # "set_version" | "set_traffic"
    description: str
    at: float
    version: str | None = None
    model_uri: str | None = None
    split: base.TrafficSplit | None = None


class DryRunTarget(base.DeploymentTarget):
    def __init__(self, inner: base.DeploymentTarget, *, clock: base.Clock = base.SYSTEM_CLOCK) -> None:
        self.inner = inner
        self._clock = clock
        self.intentions: list[Intention] = []

    def describe(self) -> str:
        return f"dry-run {self.inner.describe()}"

    def current_version(self) -> str:
        return self.inner.current_version()

    def traffic(self) -> base.TrafficSplit:
        return self.inner.traffic()

    def rollout_status(self) -> base.RolloutStatus:
        return self.inner.rollout_status()

    def set_version(self, version: str, model_uri: str) -> None:
        description = self.inner.preview_set_version(version, model_uri)
        self._record(
            Intention("set_version", description, self._clock(), version=version, model_uri=model_uri)
        )

    def set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> None:
        description = self.inner.preview_set_traffic(split, canary_model_uri)
        self._record(
            Intention("set_traffic", description, self._clock(), model_uri=canary_model_uri, split=split)
        )

    def preview_set_version(self, version: str, model_uri: str) -> str:
        return self.inner.preview_set_version(version, model_uri)

    def preview_set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> str:
        return self.inner.preview_set_traffic(split, canary_model_uri)

    def _record(self, intention: Intention) -> None:
        self.intentions.append(intention)
        logger.info("dry-run: would %s", intention.description)

"""The deployment-target contract: where a model version is served and how traffic splits.

Implementations: ``kubernetes.KubernetesDeploymentTarget`` (a Deployment, optionally with a
canary Deployment behind the same Service), ``kserve.KServeInferenceServiceTarget``,
``local.LocalTarget`` (a JSON file the demo's simulated server reads) and
``dryrun.DryRunTarget`` (wraps any target; reads pass through, writes become intentions).

Writes are idempotent: setting the version that already serves is a no-op on the serving side,
so a handler resuming after a crash may call ``set_version`` again safely. Rollout status is
read, never waited for: callers poll ``rollout_status`` from their own ticker.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` in production, a settable fake in tests."""

SYSTEM_CLOCK: Clock = time.time

# Annotations the agent keeps on the objects it manages, so its view survives restarts.
VERSION_ANNOTATION = "drift-agent.io/model-version"
MODEL_URI_ANNOTATION = "drift-agent.io/model-uri"
PREVIOUS_VERSION_ANNOTATION = "drift-agent.io/previous-version"
CHANGED_AT_ANNOTATION = "drift-agent.io/changed-at"
CANARY_VERSION_ANNOTATION = "drift-agent.io/canary-version"
CANARY_MODEL_URI_ANNOTATION = "drift-agent.io/canary-model-uri"
TOTAL_REPLICAS_ANNOTATION = "drift-agent.io/total-replicas"

# Default longer than Kubernetes' 600 s: one GPU model cold start was measured at 966 s.
DEFAULT_PROGRESS_DEADLINE_S = 1200.0


class RolloutPhase(enum.StrEnum):
    PROGRESSING = "progressing"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class RolloutStatus:
    phase: RolloutPhase
    message: str = ""


@dataclasses.dataclass(frozen=True)
class TrafficSplit:
    stable_version: str
    canary_version: str | None = None
    canary_percent: int = 0

    def __post_init__(self) -> None:
        if not self.stable_version:
            raise ValueError("TrafficSplit.stable_version must be a non-empty version string")
        if not 0 <= self.canary_percent <= 100:
            raise ValueError(
                f"TrafficSplit.canary_percent must be between 0 and 100, got {self.canary_percent}"
            )
        if self.canary_percent > 0 and not self.canary_version:
            raise ValueError(
                f"TrafficSplit.canary_percent is {self.canary_percent} but canary_version is empty: "
                "name the canary version, or set canary_percent to 0"
            )

    @property
    def has_canary(self) -> bool:
        return self.canary_version is not None and self.canary_percent > 0


class TargetError(Exception):
    """A target operation failed. ``retriable`` tells the caller whether trying later may help."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclasses.dataclass(frozen=True)
class ServedShare:
    """A canary step's traffic share: asked for, really served, and how."""

    asked: int
    served: float
    how: str  # "exact", or "2 of 10 replicas"

    def describe(self) -> str:
        if self.how == "exact" or abs(self.served - self.asked) < 1e-9:
            return f"{self.asked}%"
        return f"{self.asked}% asked, {self.served:.4g}% served ({self.how})"


class DeploymentTarget(abc.ABC):
    """One served model. Implementations: Kubernetes Deployment, KServe, local, dry-run."""

    def describe(self) -> str:
        """A short human name for logs and audit records, e.g. ``deployment ns/name``."""
        return type(self).__name__

    @abc.abstractmethod
    def current_version(self) -> str:
        """The model version serving (stable) traffic now."""

    @abc.abstractmethod
    def set_version(self, version: str, model_uri: str) -> None:
        """Point all traffic at ``version`` (rollback / promote); ends any canary."""

    @abc.abstractmethod
    def traffic(self) -> TrafficSplit:
        """The current split between stable and canary."""

    @abc.abstractmethod
    def set_traffic(self, split: TrafficSplit, canary_model_uri: str | None) -> None:
        """Send ``split.canary_percent`` of traffic to the canary version (0 ends the canary)."""

    @abc.abstractmethod
    def rollout_status(self) -> RolloutStatus:
        """Whether the last change has finished rolling out."""

    def served_percent(self, percent: int) -> ServedShare:
        """The share of traffic the canary would really get when asked for ``percent``.

        Exact by default (KServe's canaryTrafficPercent, local and dry-run targets); a target that
        splits by replicas answers with its replica arithmetic.
        """
        return ServedShare(percent, float(percent), "exact")

    def preview_set_version(self, version: str, model_uri: str) -> str:
        """Check that ``set_version`` would be accepted without changing anything; describe it.

        Targets backed by a server override this with a server-side dry run, so a dry-run
        agent still learns about missing permissions or invalid objects.
        """
        return f"{self.describe()}: set version {version} ({model_uri})"

    def preview_set_traffic(self, split: TrafficSplit, canary_model_uri: str | None) -> str:
        """Like ``preview_set_version`` for ``set_traffic``."""
        return (
            f"{self.describe()}: traffic stable={split.stable_version} "
            f"canary={split.canary_version} {split.canary_percent}%"
        )


def require_text(value: str, field: str) -> str:
    """Reject empty or non-string arguments with a message naming the field."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value

"""Roll a model back to the last version that served healthily, without ever making things worse.

One call of ``RollbackHandler.handle`` never waits for a rollout. It points the target at the
chosen version and returns ``IN_PROGRESS`` while the rollout runs; the caller calls again with
the same idempotency key (the executor keeps in-progress keys pending) and a later call
confirms: ``SUCCEEDED`` once the rollout is complete, ``FAILED`` if it failed or outlasted
``rollout_timeout_s``. Targets that switch at once (the local target) succeed in the first call.

Idempotency: every rollback is written to the registry's rollback journal (see
``actions.registry``) *before* the target changes, under the request's idempotency key. A key
found in the journal is never started again: a finished one returns its recorded result, an
unfinished one (a crash, a restart, a new leader) is confirmed if the target already serves the
new version or completed if it does not.

Decisions, in order, for a new key:

1. ``pinned_version`` in params (from the on-call overrides) refuses every rollback except a
   forced one onto the pinned version: SKIPPED, reason ``pinned``.
2. A forced rollback (``to_version`` in params, e.g. an operator's override) goes to that version
   and bypasses the in-progress guard, the circuit breaker and the cooldown: a human chose it.
3. Automatic ones: a request about a version that no longer serves is stale (SKIPPED); another
   rollback still in progress wins (SKIPPED); if the serving version is one a rollback restored
   within ``circuit_breaker_window_s``, the breaker opens: FAILED, reason ``circuit_open``, the
   version is marked unhealthy and ``recommendation: page`` asks for a human instead of flapping
   between bad versions; within ``cooldown_s`` of any rollback, SKIPPED, reason ``cooldown``.
4. The version is ``last_healthy_version`` excluding the serving one; none known -> FAILED,
   reason ``no_healthy_version``, recommendation ``page``.

On success: the old version is tagged rolled_back, the new one deployed; aliases become
``champion`` = restored version, ``previous`` = the version rolled back from.

Dry-run changes nothing (no journal, no tags, no target write); it runs the same checks and
describes the outcome, with the target's own preview of the change.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from actions import base, model_registry
from actions.targets import base as target_base

LOG = logging.getLogger(__name__)

RESULT_SUCCEEDED = "succeeded"
RESULT_FAILED = "failed"
PAGE = "page"


@dataclasses.dataclass(frozen=True)
class _Params:
    to_version: str | None
    pinned_version: str | None


class InvalidRequestError(ValueError):
    """The request cannot be acted on as written; the message names the field."""


def _version_param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequestError(f"params.{name} must be a version string like '3', got {value!r}")
    text = str(value).strip()
    if not text:
        raise InvalidRequestError(f"params.{name} must be a non-empty version string")
    return text


def _outcome(status: base.OutcomeStatus, reason: str, message: str, **details: Any) -> base.ActionOutcome:
    return base.ActionOutcome(status=status, message=message, details={"reason": reason, **details})


class RollbackHandler(base.ActionHandler):
    """The ROLLBACK action for one registered model served by one deployment target."""

    kind = base.ActionKind.ROLLBACK

    def __init__(
        self,
        registry: model_registry.ModelRegistry,
        target: target_base.DeploymentTarget,
        *,
        clock: Callable[[], float] = time.time,
        cooldown_s: float = 1800.0,
        circuit_breaker_window_s: float = 3600.0,
        rollout_timeout_s: float = 1800.0,
    ) -> None:
        for name, value in (
            ("cooldown_s", cooldown_s),
            ("circuit_breaker_window_s", circuit_breaker_window_s),
            ("rollout_timeout_s", rollout_timeout_s),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self._registry = registry
        self._target = target
        self._clock = clock
        self._cooldown_s = cooldown_s
        self._breaker_window_s = circuit_breaker_window_s
        self._rollout_timeout_s = rollout_timeout_s
        # The executor runs one handler call at a time, but a second caller must not interleave
        # the journal's read-modify-write.
        self._lock = threading.Lock()
        self._active: model_registry.RollbackEntry | None = None  # journaled and unfinished in this call

    @classmethod
    def from_settings(
        cls,
        settings: model_registry.RegistrySettings,
        *,
        model_name: str,
        target: target_base.DeploymentTarget,
        clock: Callable[[], float] = time.time,
    ) -> RollbackHandler:
        if not settings.tracking_uri:
            raise ValueError("registry.tracking_uri is not set: rollback needs the MLflow registry's URL")
        registry = model_registry.ModelRegistry(
            settings.tracking_uri,
            settings.registered_model_name or model_name,
            min_healthy_windows=settings.min_healthy_windows,
            clock=clock,
        )
        return cls(
            registry,
            target,
            clock=clock,
            cooldown_s=settings.cooldown_s,
            circuit_breaker_window_s=settings.circuit_breaker_window_s,
            rollout_timeout_s=settings.rollout_timeout_s,
        )

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        with self._lock:
            self._active = None
            try:
                return self._handle(request, dry_run=dry_run)
            except InvalidRequestError as exc:
                return _outcome(base.OutcomeStatus.FAILED, "invalid_request", str(exc))
            except model_registry.RegistryError as exc:
                return self._interrupted("registry_unavailable", str(exc), retryable=exc.retriable)
            except target_base.TargetError as exc:
                message = f"{self._target.describe()}: {exc}"
                return self._interrupted("target_unavailable", message, retryable=exc.retriable)

    def _interrupted(self, reason: str, message: str, *, retryable: bool) -> base.ActionOutcome:
        active = self._active
        if active is None:
            return _outcome(base.OutcomeStatus.FAILED, reason, message, retryable=retryable)
        if not retryable:
            # Refused for good (permissions, an invalid object): trying again cannot help; close
            # the journal entry so it stops blocking, and ask for a human.
            try:
                return self._finish(
                    active, base.OutcomeStatus.FAILED, reason, message, retryable=False, recommendation=PAGE
                )
            except model_registry.RegistryError:
                return _outcome(
                    base.OutcomeStatus.FAILED, reason, message, retryable=False, recommendation=PAGE
                )
        # The journal holds this rollback as started: report it unfinished so the caller calls
        # again with the same key (and rollout_timeout_s bounds how long that can go on).
        return _outcome(
            base.OutcomeStatus.IN_PROGRESS,
            reason,
            f"rollback {active.key} interrupted, will resume on the next call: {message}",
            retryable=retryable,
            **_entry_details(active),
        )

    # -- planning --------------------------------------------------------------------------------

    def _handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        params = self._parse(request)
        journal = self._registry.rollbacks()
        existing = next((entry for entry in journal if entry.key == request.idempotency_key), None)
        if existing is not None:
            return self._continue(existing, dry_run=dry_run)

        current = self._target.current_version()
        if params.pinned_version is not None and params.to_version != params.pinned_version:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "pinned",
                f"model {request.model_name} is pinned to version {params.pinned_version} by an override; "
                "remove the pin, or force a rollback to the pinned version",
                pinned_version=params.pinned_version,
                current_version=current,
            )
        if params.to_version is not None:
            return self._forced(request, params.to_version, current, dry_run=dry_run)
        refusal = self._automatic_refusal(request, journal, current, dry_run=dry_run)
        if refusal is not None:
            return refusal
        to_version = self._registry.last_healthy_version(exclude={current})
        if to_version is None:
            return _outcome(
                base.OutcomeStatus.FAILED,
                "no_healthy_version",
                f"no version of model {request.model_name} other than {current} is known to have served "
                f"healthily (tagged {model_registry.TAG_HEALTH}=healthy as it serves clean windows); "
                "force one with an override {action: rollback, to_version: ...}",
                current_version=current,
                recommendation=PAGE,
            )
        return self._start(request, current, to_version, forced=False, dry_run=dry_run)

    def _parse(self, request: base.ActionRequest) -> _Params:
        if request.kind is not base.ActionKind.ROLLBACK:
            raise InvalidRequestError(f"kind must be rollback, got {request.kind.value}")
        if request.model_name != self._registry.model_name:
            raise InvalidRequestError(
                f"model_name {request.model_name!r} is not the model this handler rolls back "
                f"({self._registry.model_name!r}); check registry.registered_model_name"
            )
        if not request.idempotency_key:
            raise InvalidRequestError(
                "idempotency_key must be non-empty: it is what prevents a double rollback"
            )
        return _Params(
            to_version=_version_param(request.params, "to_version"),
            pinned_version=_version_param(request.params, "pinned_version"),
        )

    def _forced(
        self, request: base.ActionRequest, to_version: str, current: str, *, dry_run: bool
    ) -> base.ActionOutcome:
        if to_version == current:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "already_serving",
                f"version {to_version} already serves model {request.model_name}",
                current_version=current,
                to_version=to_version,
            )
        try:
            self._registry.version(to_version)
        except model_registry.RegistryError as exc:
            if exc.retriable:
                raise
            raise InvalidRequestError(
                f"params.to_version {to_version!r} is not a version of model {request.model_name}: {exc}"
            ) from exc
        return self._start(request, current, to_version, forced=True, dry_run=dry_run)

    def _automatic_refusal(
        self,
        request: base.ActionRequest,
        journal: list[model_registry.RollbackEntry],
        current: str,
        *,
        dry_run: bool,
    ) -> base.ActionOutcome | None:
        now = self._clock()
        if request.model_version is not None and request.model_version != current:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "stale_request",
                f"version {request.model_version} was reported unhealthy but {current} serves now",
                current_version=current,
            )
        unfinished = [
            entry
            for entry in journal
            if entry.completed_at is None and now - entry.started_at <= self._rollout_timeout_s
        ]
        if unfinished:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "rollback_in_progress",
                f"rollback {unfinished[-1].key} to version {unfinished[-1].to_version} is still in progress",
                in_progress_key=unfinished[-1].key,
            )
        restored = [
            entry
            for entry in journal
            if entry.to_version == current and now - entry.started_at < self._breaker_window_s
        ]
        if restored:
            return self._open_circuit(request, restored[-1], current, dry_run=dry_run)
        recent = [entry for entry in journal if now - entry.started_at < self._cooldown_s]
        if recent:
            retry_after = recent[-1].started_at + self._cooldown_s - now
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "cooldown",
                f"model {request.model_name} was rolled back {now - recent[-1].started_at:.0f}s ago "
                f"(cooldown {self._cooldown_s:.0f}s); force a rollback with an override to act now",
                retry_after_s=retry_after,
                last_rollback_key=recent[-1].key,
            )
        return None

    def _open_circuit(
        self,
        request: base.ActionRequest,
        restored: model_registry.RollbackEntry,
        current: str,
        *,
        dry_run: bool,
    ) -> base.ActionOutcome:
        message = (
            f"version {current} of model {request.model_name}, restored by rollback {restored.key} "
            f"{self._clock() - restored.started_at:.0f}s ago, is unhealthy too; not rolling back again "
            "(circuit open): a human must choose the version"
        )
        if not dry_run:
            self._registry.mark_unhealthy(
                current, f"unhealthy again after rollback {restored.key}: {request.reason}"
            )
        return _outcome(
            base.OutcomeStatus.FAILED,
            "circuit_open",
            message,
            current_version=current,
            restored_by=restored.key,
            recommendation=PAGE,
            dry_run=dry_run,
        )

    # -- acting ----------------------------------------------------------------------------------

    def _start(
        self, request: base.ActionRequest, current: str, to_version: str, *, forced: bool, dry_run: bool
    ) -> base.ActionOutcome:
        model_uri = self._registry.model_uri(to_version)
        if dry_run:
            preview = self._target.preview_set_version(to_version, model_uri)
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "dry_run",
                f"would roll model {request.model_name} back from {current} to {to_version}: {preview}",
                from_version=current,
                to_version=to_version,
                model_uri=model_uri,
                forced=forced,
                dry_run=True,
            )
        entry = model_registry.RollbackEntry(
            key=request.idempotency_key,
            from_version=current,
            to_version=to_version,
            model_uri=model_uri,
            forced=forced,
            reason=request.reason,
            started_at=self._clock(),
        )
        # Journal first: whatever happens next, a retry with this key finds it and never starts over.
        self._registry.record_rollback(entry)
        self._active = entry
        LOG.info("rollback %s: model %s %s -> %s", entry.key, request.model_name, current, to_version)
        self._target.set_version(to_version, model_uri)
        return self._confirm(entry)

    def _continue(self, entry: model_registry.RollbackEntry, *, dry_run: bool) -> base.ActionOutcome:
        if entry.completed_at is not None:
            status = (
                base.OutcomeStatus.SUCCEEDED
                if entry.result == RESULT_SUCCEEDED
                else base.OutcomeStatus.FAILED
            )
            return _outcome(
                status,
                "already_done",
                f"rollback {entry.key} already finished ({entry.result}): {entry.message}",
                **_entry_details(entry),
            )
        if dry_run:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "dry_run",
                f"would confirm rollback {entry.key} to version {entry.to_version}",
                dry_run=True,
                **_entry_details(entry),
            )
        self._active = entry
        current = self._target.current_version()
        if current == entry.from_version:
            # Interrupted before the target changed: complete it. (set_version is idempotent.)
            self._target.set_version(entry.to_version, entry.model_uri)
        elif current != entry.to_version:
            return self._finish(
                entry,
                base.OutcomeStatus.FAILED,
                "target_moved",
                f"{self._target.describe()} serves version {current}, neither {entry.from_version} nor "
                f"{entry.to_version}: someone else changed it; not fighting them",
                recommendation=PAGE,
            )
        return self._confirm(entry)

    def _confirm(self, entry: model_registry.RollbackEntry) -> base.ActionOutcome:
        status = self._target.rollout_status()
        if status.phase is target_base.RolloutPhase.FAILED:
            return self._finish(
                entry,
                base.OutcomeStatus.FAILED,
                "rollout_failed",
                f"rollout of version {entry.to_version} failed: {status.message}",
                recommendation=PAGE,
            )
        if status.phase is target_base.RolloutPhase.PROGRESSING:
            waited = self._clock() - entry.started_at
            if waited > self._rollout_timeout_s:
                return self._finish(
                    entry,
                    base.OutcomeStatus.FAILED,
                    "rollout_timeout",
                    f"rollout of version {entry.to_version} still progressing after {waited:.0f}s "
                    f"(rollout_timeout_s={self._rollout_timeout_s:.0f}): {status.message}",
                    recommendation=PAGE,
                )
            return _outcome(
                base.OutcomeStatus.IN_PROGRESS,
                "in_progress",
                f"rolling back to version {entry.to_version}: {status.message}; call again with the same key",
                **_entry_details(entry),
            )
        self._registry.mark_rolled_back(entry.from_version, entry.reason, at=entry.started_at)
        self._registry.mark_deployed(entry.to_version, at=entry.started_at)
        self._registry.set_alias(model_registry.Alias.CHAMPION, entry.to_version)
        self._registry.set_alias(model_registry.Alias.PREVIOUS, entry.from_version)
        return self._finish(
            entry,
            base.OutcomeStatus.SUCCEEDED,
            "rolled_back",
            f"model {self._registry.model_name} rolled back from {entry.from_version} to {entry.to_version}",
        )

    def _finish(
        self,
        entry: model_registry.RollbackEntry,
        status: base.OutcomeStatus,
        reason: str,
        message: str,
        **details: Any,
    ) -> base.ActionOutcome:
        result = RESULT_SUCCEEDED if status is base.OutcomeStatus.SUCCEEDED else RESULT_FAILED
        finished = dataclasses.replace(entry, completed_at=self._clock(), result=result, message=message)
        self._registry.record_rollback(finished)
        return _outcome(status, reason, message, **_entry_details(finished), **details)


def _entry_details(entry: model_registry.RollbackEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "from_version": entry.from_version,
        "to_version": entry.to_version,
        "model_uri": entry.model_uri,
        "forced": entry.forced,
        "started_at": entry.started_at,
    }

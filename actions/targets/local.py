"""A deployment target backed by one JSON file, for the embedded demo and for tests.

The demo's simulated model server reads the file on each request batch to decide which version
answers, and acknowledges a change by writing ``observed_generation`` (``acknowledge``). A
target created with ``require_ack=False`` (the default) treats every change as rolled out at
once, which suits servers that read the file themselves.

Writes go to a temporary file and are renamed into place, under an advisory lock, so a reader
never sees half a file and two writers never lose each other's change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

from actions.targets import base


@dataclasses.dataclass(frozen=True)
class LocalState:
    stable_version: str
    stable_model_uri: str
    canary_version: str | None = None
    canary_model_uri: str | None = None
    canary_percent: int = 0
    generation: int = 1
    observed_generation: int = 0
    changed_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object, path: pathlib.Path) -> LocalState:
        if not isinstance(data, dict):
            raise base.TargetError(f"{path}: expected a JSON object, got {type(data).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise base.TargetError(f"{path}: unknown keys {unknown}; allowed keys are {sorted(known)}")
        try:
            state = cls(**data)
        except TypeError as exc:
            raise base.TargetError(
                f"{path}: missing stable_version or stable_model_uri ({exc}); rewrite the file "
                "or delete it and pass initial_version to LocalTarget"
            ) from exc
        if not isinstance(state.stable_version, str) or not isinstance(state.canary_percent, int):
            raise base.TargetError(f"{path}: stable_version must be a string and canary_percent an integer")
        return state


def read_state(path: pathlib.Path) -> LocalState:
    """The state as the simulated server sees it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise base.TargetError(
            f"{path} does not exist: no version deployed yet; pass initial_version to LocalTarget"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise base.TargetError(f"{path} is not valid JSON ({exc}); delete it to start over") from exc
    return LocalState.from_json(data, path)


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_state(path: pathlib.Path, state: LocalState) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(state.to_json(), handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def acknowledge(path: pathlib.Path) -> LocalState:
    """Called by the simulated server once it serves the current state."""
    with _locked(path):
        current = read_state(path)
        state = dataclasses.replace(current, observed_generation=current.generation)
        _write_state(path, state)
    return state


class LocalTarget(base.DeploymentTarget):
    def __init__(
        self,
        path: pathlib.Path,
        *,
        initial_version: str | None = None,
        initial_model_uri: str = "",
        require_ack: bool = False,
        progress_deadline_s: float = base.DEFAULT_PROGRESS_DEADLINE_S,
        clock: base.Clock = base.SYSTEM_CLOCK,
    ) -> None:
        self.path = pathlib.Path(path)
        self._require_ack = require_ack
        self._progress_deadline_s = progress_deadline_s
        self._clock = clock
        if initial_version is not None and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path):
                if not self.path.exists():
                    _write_state(
                        self.path,
                        LocalState(
                            stable_version=base.require_text(initial_version, "initial_version"),
                            stable_model_uri=initial_model_uri,
                            observed_generation=1,
                            changed_at=clock(),
                        ),
                    )

    def describe(self) -> str:
        return f"local target {self.path}"

    def state(self) -> LocalState:
        return read_state(self.path)

    def current_version(self) -> str:
        return self.state().stable_version

    def traffic(self) -> base.TrafficSplit:
        state = self.state()
        return base.TrafficSplit(state.stable_version, state.canary_version, state.canary_percent)

    def set_version(self, version: str, model_uri: str) -> None:
        base.require_text(version, "version")
        self._update(
            stable_version=version,
            stable_model_uri=model_uri,
            canary_version=None,
            canary_model_uri=None,
            canary_percent=0,
        )

    def set_traffic(self, split: base.TrafficSplit, canary_model_uri: str | None) -> None:
        if split.has_canary and not canary_model_uri:
            raise ValueError("canary_model_uri is required when split.canary_percent > 0")
        current = self.state()
        if split.stable_version != current.stable_version:
            raise base.TargetError(
                f"set_traffic names stable version {split.stable_version} but {current.stable_version} "
                "is serving: change the stable version with set_version first"
            )
        if split.has_canary:
            self._update(
                canary_version=split.canary_version,
                canary_model_uri=canary_model_uri,
                canary_percent=split.canary_percent,
            )
        else:
            self._update(canary_version=None, canary_model_uri=None, canary_percent=0)

    def rollout_status(self) -> base.RolloutStatus:
        state = self.state()
        if not self._require_ack or state.observed_generation >= state.generation:
            return base.RolloutStatus(base.RolloutPhase.COMPLETE, f"generation {state.generation} is served")
        waited = self._clock() - state.changed_at
        if waited > self._progress_deadline_s:
            return base.RolloutStatus(
                base.RolloutPhase.FAILED,
                f"{self.describe()}: generation {state.generation} not acknowledged after {waited:.0f} s "
                f"(progress_deadline_s={self._progress_deadline_s:.0f}); is the simulated server running?",
            )
        return base.RolloutStatus(
            base.RolloutPhase.PROGRESSING,
            f"waiting for the server to acknowledge generation {state.generation}",
        )

    def _update(self, **changes: Any) -> None:
        with _locked(self.path):
            current = read_state(self.path)
            wanted = dataclasses.replace(current, **changes)
            if wanted == current:
                return  # idempotent: a repeated write must not restart the rollout clock
            _write_state(
                self.path,
                dataclasses.replace(wanted, generation=current.generation + 1, changed_at=self._clock()),
            )

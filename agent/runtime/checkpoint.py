"""The sidecar's checkpoint: the engine's state and the record index, written atomically.

At-least-once: offsets are committed only after a checkpoint has made the engine's state (open
windows, detector state, policy state) durable. After a crash the agent resumes from the last
checkpoint and Kafka redelivers what came after it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
from typing import Any

from agent.pipeline import engine as engine_mod

CHECKPOINT_FILE = "checkpoint.pkl"


@dataclasses.dataclass(frozen=True)
class Restored:
    """What a checkpoint brings back: the engine, the next record index and the policy state."""

    engine: engine_mod.Engine
    index: int
    policy_state: dict[str, Any]


def save_checkpoint(path: pathlib.Path, state: Any) -> None:
    """Atomically replace the checkpoint: write, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as handle:
        pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: pathlib.Path) -> Any | None:
    """The last checkpoint, or None. The file is the agent's own (state_dir), never user input."""
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return pickle.load(handle)  # noqa: S301 - our own file in state_dir, written by save_checkpoint


def restore(state_dir: pathlib.Path) -> Restored | None:
    state = load_checkpoint(state_dir / CHECKPOINT_FILE)
    if state is None:
        return None
    engine = state["engine"]
    if not isinstance(engine, engine_mod.Engine):
        raise TypeError("checkpoint does not hold an engine; remove it to start afresh")
    policy_state = state.get("policy_state", {})
    if not isinstance(policy_state, dict):
        raise TypeError("checkpoint holds no policy state mapping; remove it to start afresh")
    return Restored(engine, int(state["index"]), policy_state)

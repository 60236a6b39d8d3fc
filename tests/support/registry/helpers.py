"""Helpers shared by the registry and rollback tests: a settable clock and tiny model versions."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import uuid
from collections.abc import Mapping

from mlflow.tracking import MlflowClient

from actions import model_registry
from demo import world

EXPERIMENT = "drift-agent-tests"


@dataclasses.dataclass
class ManualClock:
    """Seconds since the epoch, moved only by the test."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def unique_model_name(prefix: str = "model") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def storage_source(model_name: str, version_number: int) -> str:
    """A remote-looking storage URI: the registry stores it, nothing reads it."""
    return f"s3://models/{model_name}/v{version_number}"


def served_well(*, deployed_at: float, healthy_at: float, windows: int = 12) -> dict[str, str]:
    """The tags ModelRegistry.mark_deployed + mark_healthy leave on a version that served well."""
    return {
        model_registry.TAG_DEPLOYED_AT: json.dumps([deployed_at]),
        model_registry.TAG_HEALTH: "healthy",
        model_registry.TAG_HEALTHY_AT: repr(healthy_at),
        model_registry.TAG_HEALTHY_WINDOWS: str(windows),
    }


def register_remote_versions(
    client: MlflowClient, model_name: str, count: int, tags: Mapping[int, Mapping[str, str]] | None = None
) -> list[str]:
    """Create the model and ``count`` versions whose source is an s3:// URI, one call per version.

    ``tags`` (version number -> tags) are set in the same call: a history fixture costs no extra
    round trips (the registry tests check that ModelRegistry writes these same tags itself).
    """
    sources = [storage_source(model_name, n) for n in range(1, count + 1)]
    return world.register_versions(client, model_name, sources, tags)


def experiment_id(client: MlflowClient) -> str:
    existing = client.get_experiment_by_name(EXPERIMENT)
    if existing is not None:
        return str(existing.experiment_id)
    return str(client.create_experiment(EXPERIMENT))


def register_run_version(client: MlflowClient, model_name: str, work_dir: pathlib.Path, content: str) -> str:
    """A version whose source is ``runs:/<run>/model`` holding one real artifact file, weights.txt."""
    run = client.create_run(experiment_id(client))
    model_dir = work_dir / f"run-{run.info.run_id}" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "weights.txt").write_text(content, encoding="utf-8")
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        model_name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, await_creation_for=0
    )
    return str(version.version)


def register_logged_model_version(
    client: MlflowClient, model_name: str, work_dir: pathlib.Path, content: str
) -> tuple[str, str]:
    """A version whose source is a logged model (``models:/m-<id>``); returns (version, model id)."""
    logged = client.create_logged_model(experiment_id(client), name="model")
    model_dir = work_dir / f"logged-{logged.model_id}"
    model_dir.mkdir(parents=True)
    (model_dir / "weights.txt").write_text(content, encoding="utf-8")
    client.log_model_artifacts(logged.model_id, str(model_dir))
    version = client.create_model_version(
        model_name, f"models:/{logged.model_id}", model_id=logged.model_id, await_creation_for=0
    )
    return str(version.version), str(logged.model_id)

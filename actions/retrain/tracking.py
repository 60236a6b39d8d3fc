"""Every retrain is an MLflow run; a candidate that passes its gates becomes a new model version.

The run holds: params (strategy, trainer settings, row counts), metrics (candidate and baseline
quality, latency, memory, each gate's measured value), the data fingerprints (sha256 of the
training rows and of the held-out window, ids and values), the model under ``model/`` as an
MLflow pyfunc (built-in models are wrapped: ``actions/retrain/pyfunc_entry.py`` is logged as
code, nothing is pickled), and tags saying why it was trained.

Registration creates a NEW version only: no alias moves and nothing is deployed; the canary
decides that. Both the run and the version carry ``drift_agent.idempotency_key``, so a handler
called again with the same key finds them instead of training twice.

``mlflow`` is imported when a ``Tracker`` is made (seconds), not with this module.
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TAG_KEY = "drift_agent.idempotency_key"
TAG_INCIDENT = "drift_agent.incident_id"
TAG_TRIGGER = "drift_agent.trigger"
TAG_STRATEGY = "drift_agent.strategy"
TAG_SEVERITY = "drift_agent.severity"
TAG_MODEL = "drift_agent.model_name"
TAG_SERVING_VERSION = "drift_agent.serving_version"
TAG_TRAIN_FINGERPRINT = "drift_agent.train_fingerprint"
TAG_HOLDOUT_FINGERPRINT = "drift_agent.holdout_fingerprint"
TAG_DATA_FINGERPRINT = "drift_agent.data_fingerprint"
TAG_OUTCOME = "drift_agent.outcome"  # JSON of the final outcome; absent while the retrain runs
TAG_JOB = "drift_agent.retrain_job"
TAG_GATES = "drift_agent.gates"
TAG_RUN_ID = "drift_agent.run_id"
TAG_VALUE_MAX = 5000  # MLflow 3 caps a tag value at 8000 chars; keep well below
MODEL_ARTIFACT = "model"
PYFUNC_ENTRY = pathlib.Path(__file__).with_name("pyfunc_entry.py")
DEFAULT_PIP_REQUIREMENTS = ("drift-agent", "torch==2.13.0", "numpy", "pandas<3")

_T = TypeVar("_T")


class TrackingError(RuntimeError):
    """MLflow could not do what was asked. ``retriable``: the server failed, not the request."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Tracker:
    """One experiment and one registered model, through ``MlflowClient`` (no fluent global state)."""

    def __init__(self, tracking_uri: str, experiment_name: str, model_name: str) -> None:
        if not model_name or "'" in model_name:
            raise ValueError(
                f"registered model name {model_name!r} must be non-empty and contain no single quote"
            )
        from mlflow import tracking  # noqa: PLC0415 - seconds to import; only retrain pays it

        self._client: MlflowClient = tracking.MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        self._experiment_name = experiment_name
        self._experiment_id: str | None = None
        self.model_name = model_name

    @property
    def client(self) -> MlflowClient:
        return self._client

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            existing = self._call(
                "read the experiment", self._client.get_experiment_by_name, self._experiment_name
            )
            if existing is not None:
                self._experiment_id = str(existing.experiment_id)
            else:
                self._experiment_id = str(
                    self._call("create the experiment", self._client.create_experiment, self._experiment_name)
                )
        return self._experiment_id

    # -- runs --------------------------------------------------------------------------------------

    def find_run(self, key: str) -> tuple[str, dict[str, str]] | None:
        """(run id, tags) of the retrain run recorded under ``key``; the oldest if several."""
        _check_key(key)
        runs = self._call(
            f"search runs for key {key}",
            self._client.search_runs,
            [self.experiment_id()],
            filter_string=f"tags.`{TAG_KEY}` = '{key}'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        if not runs:
            return None
        run = runs[0]
        return str(run.info.run_id), dict(run.data.tags)

    def start_run(self, key: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        _check_key(key)
        run = self._call(
            "create a retrain run",
            self._client.create_run,
            self.experiment_id(),
            tags={**{k: _clip(v) for k, v in tags.items()}, TAG_KEY: key},
            run_name=f"retrain-{key}"[:200],
        )
        run_id = str(run.info.run_id)
        from mlflow.entities import Param  # noqa: PLC0415 - mlflow is loaded by now

        entries = [Param(name, _clip(str(value), 6000)) for name, value in sorted(params.items())]
        self._call("log params", self._client.log_batch, run_id, params=entries)
        return run_id

    def log_metrics(self, run_id: str, values: Mapping[str, float], *, timestamp_ms: int = 0) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415

        entries = [
            Metric(_metric_name(name), float(value), timestamp_ms, 0)
            for name, value in sorted(values.items())
            if math.isfinite(value)  # NaN is not a metric MLflow can show
        ]
        if entries:
            self._call("log metrics", self._client.log_batch, run_id, metrics=entries)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call(f"tag run {run_id} ({key})", self._client.set_tag, run_id, key, _clip(value))

    def log_model(self, run_id: str, model_dir: pathlib.Path) -> str:
        """Log ``model_dir`` as ``runs:/<run>/model`` (a pyfunc); returns that URI."""
        if (model_dir / "MLmodel").is_file():
            self._call("log the model", self._client.log_artifacts, run_id, str(model_dir), MODEL_ARTIFACT)
        else:
            with tempfile.TemporaryDirectory(prefix="drift-agent-pyfunc-") as scratch:
                packaged = pathlib.Path(scratch) / MODEL_ARTIFACT
                package_pyfunc(model_dir, packaged)
                self._call("log the model", self._client.log_artifacts, run_id, str(packaged), MODEL_ARTIFACT)
        return f"runs:/{run_id}/{MODEL_ARTIFACT}"

    def finish(self, run_id: str, outcome: Mapping[str, Any], *, succeeded: bool) -> None:
        """Record the outcome (the idempotent answer to later calls), then close the run."""
        self._call(
            "record the outcome", self._client.set_tag, run_id, TAG_OUTCOME, _clip(json.dumps(outcome))
        )
        self._call(
            "close the run", self._client.set_terminated, run_id, "FINISHED" if succeeded else "FAILED"
        )

    def download_model(self, run_id: str, destination: pathlib.Path) -> pathlib.Path:
        destination.mkdir(parents=True, exist_ok=True)
        local = self._call(
            "download the model", self._client.download_artifacts, run_id, MODEL_ARTIFACT, str(destination)
        )
        return pathlib.Path(local)

    # -- registry ----------------------------------------------------------------------------------

    def find_version(self, key: str) -> str | None:
        _check_key(key)
        found = self._call(
            f"search versions for key {key}",
            self._client.search_model_versions,
            filter_string=f"name='{self.model_name}' and tags.`{TAG_KEY}` = '{key}'",
        )
        versions = sorted(int(v.version) for v in found)
        return str(versions[0]) if versions else None

    def register(self, run_id: str, key: str, tags: Mapping[str, str]) -> str:
        """A new version from the run's model, tagged; an existing one for ``key`` is returned as is."""
        existing = self.find_version(key)
        if existing is not None:
            return existing
        from mlflow import exceptions as mlflow_exceptions  # noqa: PLC0415

        try:
            self._client.create_registered_model(self.model_name)
        except mlflow_exceptions.MlflowException as exc:
            if str(getattr(exc, "error_code", "")) != "RESOURCE_ALREADY_EXISTS":
                raise _tracking_error("create the registered model", exc) from exc
        version = self._call(
            "register the candidate",
            self._client.create_model_version,
            self.model_name,
            f"runs:/{run_id}/{MODEL_ARTIFACT}",
            run_id=run_id,
            tags={**{k: _clip(v) for k, v in tags.items()}, TAG_KEY: key, TAG_RUN_ID: run_id},
            description=_clip(tags.get(TAG_TRIGGER, "retrained by drift-agent"), 2000),
            await_creation_for=0,
        )
        return str(version.version)

    def aliases(self) -> dict[str, str]:
        """alias -> version; empty while the model has never been registered."""
        from mlflow import exceptions as mlflow_exceptions  # noqa: PLC0415

        try:
            model = self._client.get_registered_model(self.model_name)
        except mlflow_exceptions.MlflowException as exc:
            if str(getattr(exc, "error_code", "")) == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise _tracking_error("read the registered model", exc) from exc
        return {str(alias): str(version) for alias, version in dict(model.aliases or {}).items()}

    def version_source(self, version: str) -> str:
        found = self._call("read a version", self._client.get_model_version, self.model_name, version)
        return str(found.source)

    def _call(self, what: str, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        from mlflow import exceptions as mlflow_exceptions  # noqa: PLC0415 - loaded by __init__

        try:
            return method(*args, **kwargs)
        except mlflow_exceptions.MlflowException as exc:
            raise _tracking_error(what, exc) from exc


def package_pyfunc(model_dir: pathlib.Path, destination: pathlib.Path) -> None:
    """Save the built-in model directory as an MLflow pyfunc model (models-from-code, no pickle)."""
    import mlflow.pyfunc  # noqa: PLC0415

    mlflow.pyfunc.save_model(
        str(destination),
        python_model=str(PYFUNC_ENTRY),
        artifacts={"model_dir": str(model_dir)},
        pip_requirements=list(DEFAULT_PIP_REQUIREMENTS),
    )


def _tracking_error(what: str, exc: Any) -> TrackingError:
    code = str(getattr(exc, "error_code", ""))
    retriable = code not in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED"}
    return TrackingError(f"MLflow: cannot {what}: {getattr(exc, 'message', exc)}", retriable=retriable)


def _check_key(key: str) -> None:
    if not key or "'" in key or "`" in key:
        raise ValueError(
            f"idempotency key {key!r} must be non-empty and contain no quote or backtick "
            "(it is searched in MLflow)"
        )


def _clip(value: str, limit: int = TAG_VALUE_MAX) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _metric_name(name: str) -> str:
    # MLflow allows letters, digits, _ - . space / : only.
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in name)

"""Where training runs: in this process, in a child process, or as a Kubernetes Job.

Every runner takes a staged job directory (``actions.retrain.job``) and has two calls:
``submit`` (start it; calling again for the same job does not start a second one) and ``poll``
(read how it stands, never wait). The handler polls on each call with the same idempotency key,
so a long Kubernetes Job never blocks the agent.

- ``InProcessRunner``: trains inside ``submit`` (tests, small models).
- ``SubprocessRunner``: runs a command (argv list, no shell) to completion inside ``submit``,
  bounded by ``timeout_s`` (the demo). Placeholders in the argv: ``{work_dir}``, ``{train}``,
  ``{output}``, ``{settings}``, ``{warm_start}``; the same paths are in the environment as
  ``DRIFT_AGENT_RETRAIN_<NAME>`` (``WARM_START`` empty without one). The command writes a model
  directory (built-in format or MLflow pyfunc) into ``{output}``.
- ``KubernetesJobRunner``: creates a ``batch/v1`` Job from a template and follows its
  ``Complete`` / ``Failed`` conditions; past ``timeout_s`` it deletes the Job and fails. The Job's
  pod must mount the job directory at the same path (a shared volume).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import enum
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from actions.retrain import config, dataset, job, model, trainer

DEFAULT_COMMAND = (sys.executable, "-m", "actions.retrain.trainer", "--job-dir", "{work_dir}")
STARTED_AT_ANNOTATION = "drift-agent.io/retrain-started-at"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
JOB_NAME_LABEL = "drift-agent.io/retrain-job"
STDERR_TAIL_CHARS = 2000


class RunPhase(enum.StrEnum):
    PENDING = "pending"  # not submitted (or nothing seen of it yet)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class RunStatus:
    phase: RunPhase
    message: str = ""


class RunnerError(RuntimeError):
    """The runner could not reach what runs the job. ``retriable``: try again later."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Runner(abc.ABC):
    kind: str

    @abc.abstractmethod
    def submit(self, spec: job.JobSpec) -> None:
        """Start the staged job; a second call for the same job starts nothing new."""

    @abc.abstractmethod
    def poll(self, spec: job.JobSpec) -> RunStatus:
        """How the job stands now."""


def finished_status(spec: job.JobSpec) -> RunStatus | None:
    """What the job directory says: a model in the output, a recorded failure, or nothing yet."""
    failure = spec.failure()
    if failure is not None:
        return RunStatus(RunPhase.FAILED, failure)
    if model.is_model_dir(spec.output_dir) or (spec.output_dir / "MLmodel").is_file():
        return RunStatus(RunPhase.SUCCEEDED, f"model written to {spec.output_dir}")
    return None


class InProcessRunner(Runner):
    kind = "in_process"

    def submit(self, spec: job.JobSpec) -> None:
        if finished_status(spec) is not None:
            return
        try:
            settings = config.TrainerSettings.model_validate_json(
                spec.settings_path.read_text(encoding="utf-8")
            )
            train_set = dataset.TrainingSet.from_parquet(spec.train_path)
            result = trainer.train(train_set, settings, warm_start=spec.warm_start())
        except (pydantic.ValidationError, OSError, ValueError) as exc:
            spec.record_failure(f"training failed: {exc}")
            return
        result.model.save(spec.output_dir)

    def poll(self, spec: job.JobSpec) -> RunStatus:
        return finished_status(spec) or RunStatus(RunPhase.PENDING, "not submitted")


class SubprocessRunner(Runner):
    kind = "subprocess"

    def __init__(self, command: Sequence[str] = DEFAULT_COMMAND, *, timeout_s: float = 3600.0) -> None:
        if not command:
            raise ValueError("retrain.runner.command must be a non-empty argv list")
        self._command = tuple(command)
        self._timeout_s = timeout_s

    def argv(self, spec: job.JobSpec) -> list[str]:
        paths = _placeholders(spec)
        return [fill(part, paths) for part in self._command]

    def submit(self, spec: job.JobSpec) -> None:
        if finished_status(spec) is not None:
            return
        argv = self.argv(spec)
        env = dict(os.environ)
        env.update(
            {f"DRIFT_AGENT_RETRAIN_{key.upper()}": value for key, value in _placeholders(spec).items()}
        )
        try:
            completed = subprocess.run(  # noqa: S603 - argv from the agent's own config, no shell
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            spec.record_failure(f"training command timed out after {self._timeout_s:.0f}s: {argv[0]}")
            return
        except OSError as exc:
            spec.record_failure(f"training command {argv[0]!r} could not start: {exc}")
            return
        if completed.returncode != 0:
            tail = completed.stderr[-STDERR_TAIL_CHARS:].strip()
            spec.record_failure(f"training command exited with {completed.returncode}: {tail}")
        elif finished_status(spec) is None:
            spec.record_failure(
                f"training command exited 0 but wrote no model into {spec.output_dir} "
                f"(expected {model.METADATA_FILE} + {model.WEIGHTS_FILE}, or an MLflow MLmodel)"
            )

    def poll(self, spec: job.JobSpec) -> RunStatus:
        return finished_status(spec) or RunStatus(RunPhase.PENDING, "not submitted")


_PLACEHOLDER = re.compile(r"\{(work_dir|train|output|settings|warm_start|job_name)\}")


def fill(text: str, paths: Mapping[str, str]) -> str:
    """Replace the known placeholders only: other braces (inline code, JSON) stay as written."""
    return _PLACEHOLDER.sub(lambda match: paths[match.group(1)], text)


def _placeholders(spec: job.JobSpec) -> dict[str, str]:
    warm = spec.warm_start_dir if model.is_model_dir(spec.warm_start_dir) else None
    return {
        "work_dir": str(spec.work_dir),
        "train": str(spec.train_path),
        "output": str(spec.output_dir),
        "settings": str(spec.settings_path),
        "warm_start": "" if warm is None else str(warm),
        "job_name": spec.name,
    }


# -- Kubernetes ------------------------------------------------------------------------------------


class KubernetesJobRunner(Runner):
    """Creates the Job through ``BatchV1Api`` and reads its conditions; never waits."""

    kind = "kubernetes"

    def __init__(
        self,
        api_client: Any,
        settings: config.KubernetesJobSettings,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from kubernetes import client as k8s_client  # noqa: PLC0415 - only this runner needs kubernetes

        self._batch = k8s_client.BatchV1Api(api_client)
        self._api_exception: type[Exception] = k8s_client.ApiException
        self._job_model: Any = k8s_client.V1Job
        self._settings = settings
        self._timeout_s = timeout_s
        self._clock = clock

    def manifest(self, spec: job.JobSpec) -> dict[str, Any]:
        body: dict[str, Any] = _substitute(copy.deepcopy(self._settings.job_template), _placeholders(spec))
        metadata = body.setdefault("metadata", {})
        metadata["name"] = spec.name
        metadata.setdefault("labels", {}).update({MANAGED_BY_LABEL: "drift-agent", JOB_NAME_LABEL: spec.name})
        metadata.setdefault("annotations", {})[STARTED_AT_ANNOTATION] = repr(self._clock())
        # Kubernetes enforces the bound too, even if no agent is left to poll.
        body["spec"]["activeDeadlineSeconds"] = max(1, int(self._timeout_s))
        return body

    def submit(self, spec: job.JobSpec) -> None:
        try:
            self._batch.create_namespaced_job(
                self._settings.namespace, self._job_model.model_validate(self.manifest(spec))
            )
        except self._api_exception as exc:
            if _status(exc) == 409:  # already created by an earlier call with this key
                return
            raise RunnerError(
                f"cannot create Job {self._settings.namespace}/{spec.name}: {_reason(exc)}",
                retriable=_status(exc) in (0, 429) or _status(exc) >= 500,
            ) from exc

    def poll(self, spec: job.JobSpec) -> RunStatus:
        namespace = self._settings.namespace
        try:
            found = self._batch.read_namespaced_job(spec.name, namespace)
        except self._api_exception as exc:
            if _status(exc) == 404:
                return RunStatus(RunPhase.PENDING, f"Job {namespace}/{spec.name} does not exist")
            raise RunnerError(
                f"cannot read Job {namespace}/{spec.name}: {_reason(exc)}", retriable=_status(exc) != 403
            ) from exc
        data = found.to_dict()
        for condition in (data.get("status") or {}).get("conditions") or []:
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                return finished_status(spec) or RunStatus(
                    RunPhase.FAILED,
                    f"Job {namespace}/{spec.name} completed but {spec.output_dir} holds no model: "
                    "does the pod "
                    "mount the job directory at the same path?",
                )
            if condition.get("type") == "Failed":
                why = condition.get("reason") or "Failed"
                return RunStatus(
                    RunPhase.FAILED,
                    f"Job {namespace}/{spec.name} failed ({why}): {condition.get('message') or ''}".rstrip(
                        ": "
                    ),
                )
        started = _started_at(data)
        waited = self._clock() - started if started is not None else 0.0
        if waited > self._timeout_s:
            self._delete(spec)
            return RunStatus(
                RunPhase.FAILED,
                f"Job {namespace}/{spec.name} still running after {waited:.0f}s "
                f"(retrain.runner.timeout_s={self._timeout_s:.0f}); deleted it",
            )
        active = (data.get("status") or {}).get("active") or 0
        return RunStatus(RunPhase.RUNNING, f"Job {namespace}/{spec.name} running ({active} active pod(s))")

    def _delete(self, spec: job.JobSpec) -> None:
        try:
            self._batch.delete_namespaced_job(
                spec.name, self._settings.namespace, propagation_policy="Background"
            )
        except self._api_exception as exc:
            if _status(exc) != 404:
                raise RunnerError(f"cannot delete Job {spec.name}: {_reason(exc)}", retriable=True) from exc


def _substitute(value: Any, paths: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, paths)
    if isinstance(value, list):
        return [_substitute(item, paths) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, paths) for key, item in value.items()}
    return value


def _started_at(job_data: Mapping[str, Any]) -> float | None:
    annotations = (job_data.get("metadata") or {}).get("annotations") or {}
    try:
        return float(annotations[STARTED_AT_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _reason(exc: Exception) -> str:
    return f"HTTP {_status(exc)} {getattr(exc, 'reason', '')}".strip()


# -- settings --------------------------------------------------------------------------------------


def build_runner(
    settings: config.RunnerSettings, *, api_client: Any = None, clock: Callable[[], float] = time.time
) -> Runner:
    if settings.kind == "in_process":
        return InProcessRunner()
    if settings.kind == "subprocess":
        return SubprocessRunner(settings.command or DEFAULT_COMMAND, timeout_s=settings.timeout_s)
    if api_client is None:
        raise ValueError("retrain.runner.kind is kubernetes: the agent must pass a Kubernetes API client")
    return KubernetesJobRunner(api_client, settings.kubernetes, timeout_s=settings.timeout_s, clock=clock)

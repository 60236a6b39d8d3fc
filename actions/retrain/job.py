"""One training job's directory: what a runner hands the trainer and where the model comes back.

    <work_dir>/train.parquet    training rows (layout: actions.retrain.dataset)
    <work_dir>/holdout.parquet  the held-out window (the trainer never reads it; the gates do)
    <work_dir>/trainer.json     TrainerSettings
    <work_dir>/warm_start/      the serving model, when the strategy warm-starts
    <work_dir>/output/          the trainer writes the model here
    <work_dir>/failed.txt       why it failed, when a runner could tell

Every runner uses this layout, so a job staged by one pod can be finished by another (the
directory is on a volume the agent and the Kubernetes Job share).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re

from actions.retrain import dataset, model

_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")
NAME_PREFIX = "retrain-"
_NAME_MAX = 63  # a Kubernetes object name that also fits a label value


def job_name(idempotency_key: str) -> str:
    """A DNS-1123 name from the key: readable stem plus a hash, so distinct keys never collide."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:10]
    stem = _NAME_UNSAFE.sub("-", idempotency_key.lower()).strip("-")
    room = _NAME_MAX - len(NAME_PREFIX) - len(digest) - 1
    stem = stem[:room].strip("-")
    return f"{NAME_PREFIX}{stem}-{digest}" if stem else f"{NAME_PREFIX}{digest}"


@dataclasses.dataclass(frozen=True)
class JobSpec:
    name: str
    work_dir: pathlib.Path

    @property
    def train_path(self) -> pathlib.Path:
        return self.work_dir / "train.parquet"

    @property
    def holdout_path(self) -> pathlib.Path:
        return self.work_dir / "holdout.parquet"

    @property
    def settings_path(self) -> pathlib.Path:
        return self.work_dir / "trainer.json"

    @property
    def warm_start_dir(self) -> pathlib.Path:
        return self.work_dir / "warm_start"

    @property
    def output_dir(self) -> pathlib.Path:
        return self.work_dir / "output"

    @property
    def failure_path(self) -> pathlib.Path:
        return self.work_dir / "failed.txt"

    @property
    def staged(self) -> bool:
        return self.train_path.is_file() and self.holdout_path.is_file() and self.settings_path.is_file()

    def warm_start(self) -> model.TabularModel | None:
        return (
            model.TabularModel.load(self.warm_start_dir) if model.is_model_dir(self.warm_start_dir) else None
        )

    def record_failure(self, message: str) -> None:
        self.failure_path.write_text(message, encoding="utf-8")

    def failure(self) -> str | None:
        try:
            return self.failure_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def stage(
    spec: JobSpec,
    train: dataset.TrainingSet,
    holdout: dataset.TrainingSet,
    trainer_settings_json: str,
    warm_start: model.TabularModel | None,
) -> None:
    """Write the job's inputs; the output directory is left for the trainer to create."""
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    train.to_parquet(spec.train_path)
    holdout.to_parquet(spec.holdout_path)
    spec.settings_path.write_text(trainer_settings_json, encoding="utf-8")
    if warm_start is not None:
        warm_start.save(spec.warm_start_dir)

"""The ``retrain`` settings group: strategy, trainer, gates, runner, and where runs are tracked.

Plain pydantic only: the settings tree imports this module, so it must not pull in torch or
mlflow (seconds each). The modules that do the work import their settings from here.
"""

from __future__ import annotations

import enum
import pathlib
from typing import Any, Literal

import pydantic


class StrategyKind(enum.StrEnum):
    FULL = "full"
    SLIDING = "sliding"
    INCREMENTAL = "incremental"


class StrategySettings(pydantic.BaseModel):
    """The ``retrain.strategy`` group."""

    model_config = pydantic.ConfigDict(extra="forbid")

    kind: StrategyKind = pydantic.Field(
        StrategyKind.SLIDING, description="full | sliding | incremental (see actions/retrain/strategies.py)."
    )
    holdout_fraction: float = pydantic.Field(
        0.2, gt=0, lt=1, description="Newest fraction of the recent rows held out for the gates."
    )
    max_rows: int = pydantic.Field(
        200_000, ge=10, description="full: most training rows kept (newest first; reference is oldest)."
    )
    window_records: int = pydantic.Field(
        20_000, ge=10, description="sliding/incremental: newest recent rows trained on."
    )
    window_s: float | None = pydantic.Field(
        None,
        gt=0,
        description="sliding/incremental: also drop rows older than this many seconds before the newest.",
    )
    from_change: bool = pydantic.Field(
        True,
        description="sliding/incremental: when the serving model's errors on the recent rows rose at one "
        "point (a split test, actions/retrain/change_point.py), train only on the rows after it (at least "
        "min_train_rows); false trains on the whole window.",
    )
    min_rows_after_change: int = pydantic.Field(
        1000,
        ge=0,
        description="from_change: fewer training rows after the change than this and the retrain waits "
        "(in progress) for more labelled traffic, at most change_wait_s after the incident opened; 0 never "
        "waits.",
    )
    change_wait_s: float = pydantic.Field(
        1800.0,
        ge=0,
        description="from_change: longest wait for min_rows_after_change; then it trains on what there is.",
    )
    min_train_rows: int = pydantic.Field(100, ge=2, description="Fewer training rows than this: no retrain.")


class TrainerSettings(pydantic.BaseModel):
    """The built-in trainer (``retrain.trainer``)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    task: Literal["auto", "binary", "multiclass", "regression"] = pydantic.Field(
        "auto",
        description="auto: string labels, or at most 20 distinct integer labels, are classes (2 = binary); "
        "anything else is regression.",
    )
    positive_class: str | None = pydantic.Field(
        None,
        description="Binary: the class whose probability is the score (AUC); null = '1' if present, "
        "else the last class in sorted order.",
    )
    hidden_sizes: list[pydantic.PositiveInt] = pydantic.Field(
        default_factory=lambda: [64, 32], max_length=8, description="Widths of the MLP's hidden layers."
    )
    epochs: int = pydantic.Field(30, ge=1, le=10_000, description="Passes over the data (full/sliding).")
    incremental_epochs: int = pydantic.Field(
        5, ge=1, le=10_000, description="Passes over the new data when warm-starting (strategy incremental)."
    )
    batch_size: int = pydantic.Field(128, ge=1, description="Rows per optimisation step.")
    learning_rate: float = pydantic.Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = pydantic.Field(0.0, ge=0, description="Adam weight decay (L2).")
    seed: int = pydantic.Field(
        0, description="Seed for initialisation and shuffling (same seed, same weights)."
    )
    device: Literal["auto", "cpu", "cuda"] = pydantic.Field(
        "auto", description="auto = CUDA when torch sees a device, else CPU."
    )
    cpu_threads: int = pydantic.Field(
        1,
        ge=1,
        le=256,
        description="torch intra-op threads while training on CPU. A small MLP gains nothing from more, and "
        "on "
        "a busy node extra threads spin: 400 rows x 20 epochs took 0.1 s on 1 thread, 2.7-18 s on 2.",
    )
    max_categories: int = pydantic.Field(
        50,
        ge=1,
        description="Most frequent categories one-hot encoded per string feature; rarer ones read as unseen.",
    )


class PerformanceGateSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(True, description="Compare the candidate with the serving model.")
    metric: Literal["f1", "auc", "accuracy", "rmse"] | None = pydantic.Field(
        None,
        description="f1 | auc | accuracy | rmse; null = auc for binary (f1 when no scores), macro f1 for "
        "multiclass, rmse for regression.",
    )
    max_relative_drop: float = pydantic.Field(
        0.01,
        ge=0,
        le=1,
        description="Candidate may be at most this fraction worse than the baseline "
        "(0.01 = baseline minus 1%).",
    )
    require_baseline: bool = pydantic.Field(
        True,
        description="Fail when the serving model's answers for the held-out window are unknown (no logged "
        "predictions, no baseline model); false = judge the candidate alone (first model).",
    )
    min_holdout_rows: int = pydantic.Field(
        30, ge=1, description="Fewer held-out rows than this fails the gate."
    )


class SliceGateSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(True, description="Check every configured segment separately.")
    segments: list[str] = pydantic.Field(
        default_factory=list, description="Segment attributes whose every value is a slice (e.g. region)."
    )
    max_gap_to_overall: float = pydantic.Field(
        0.1,
        ge=0,
        description="A slice's metric may trail the candidate's overall metric by at most this much.",
    )
    max_relative_drop: float = pydantic.Field(
        0.02, ge=0, le=1, description="A slice may be at most this fraction worse than the baseline on it."
    )
    min_rows: int = pydantic.Field(30, ge=1, description="Slices with fewer held-out rows are not judged.")


class LatencyGateSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(True, description="Benchmark batch inference.")
    max_p95_ms: float = pydantic.Field(
        100.0, gt=0, description="p95 of one batch inference must be below this."
    )
    batch_size: int = pydantic.Field(256, ge=1, description="Rows per benchmark batch.")
    repeats: int = pydantic.Field(30, ge=2, description="Timed batches.")
    warmup: int = pydantic.Field(3, ge=0, description="Untimed batches first (lazy initialisation).")


class MemoryGateSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(True, description="Measure peak memory of load + one batch.")
    max_peak_mb: float = pydantic.Field(2048.0, gt=0, description="Peak memory (MiB) must be below this.")


class LeakageGateSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(True, description="Check for train/held-out overlap and label copies.")
    max_abs_correlation: float = pydantic.Field(
        0.999, gt=0, le=1, description="A numeric feature correlated with the label above this is a copy."
    )


class GateSettings(pydantic.BaseModel):
    """The ``retrain.gates`` group."""

    model_config = pydantic.ConfigDict(extra="forbid")

    performance: PerformanceGateSettings = pydantic.Field(
        default_factory=PerformanceGateSettings, description="Candidate vs serving model."
    )
    slices: SliceGateSettings = pydantic.Field(default_factory=SliceGateSettings, description="Per-segment.")
    latency: LatencyGateSettings = pydantic.Field(
        default_factory=LatencyGateSettings, description="p95 latency."
    )
    memory: MemoryGateSettings = pydantic.Field(
        default_factory=MemoryGateSettings, description="Peak memory."
    )
    leakage: LeakageGateSettings = pydantic.Field(default_factory=LeakageGateSettings, description="Leakage.")


def default_job_template() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86_400,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "drift-agent:0.1.0",
                            "command": ["python", "-m", "actions.retrain.trainer", "--job-dir", "{work_dir}"],
                            "volumeMounts": [
                                {"name": "retrain-work", "mountPath": "/var/lib/drift-agent/retrain"}
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "retrain-work",
                            "persistentVolumeClaim": {"claimName": "drift-agent-retrain"},
                        }
                    ],
                }
            },
        },
    }


class KubernetesJobSettings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    namespace: str = pydantic.Field("default", description="Namespace the training Jobs are created in.")
    job_template: dict[str, Any] = pydantic.Field(
        default_factory=default_job_template,
        description="A batch/v1 Job manifest (YAML mapping). Strings may use {job_name}, {work_dir}, "
        "{train}, {output}, {settings}, {warm_start}; metadata.name, labels and activeDeadlineSeconds "
        "are set "
        "by the agent. The pod must mount the job directory (retrain.runner.work_dir) at the same path.",
    )

    @pydantic.field_validator("job_template")
    @classmethod
    def _has_containers(cls, template: dict[str, Any]) -> dict[str, Any]:
        containers = template.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("job_template needs spec.template.spec.containers (a non-empty list)")
        return template


class RunnerSettings(pydantic.BaseModel):
    """The ``retrain.runner`` group."""

    model_config = pydantic.ConfigDict(extra="forbid")

    kind: Literal["in_process", "subprocess", "kubernetes"] = pydantic.Field(
        "subprocess", description="in_process | subprocess | kubernetes (a batch/v1 Job)."
    )
    work_dir: pathlib.Path = pydantic.Field(
        pathlib.Path(".state/retrain"),
        description="Where job directories are staged; for kubernetes, a volume the Job's pod mounts too.",
    )
    command: list[str] | None = pydantic.Field(
        None,
        description="subprocess: your training entrypoint as an argv list (no shell), with placeholders "
        "{train} {output} {settings} {warm_start} {work_dir}; null = the built-in trainer.",
    )
    timeout_s: float = pydantic.Field(
        7200.0,
        gt=0,
        description="A training job running longer than this fails (and a Kubernetes Job is deleted).",
    )
    kubernetes: KubernetesJobSettings = pydantic.Field(
        default_factory=KubernetesJobSettings, description="Job runner settings (kind=kubernetes)."
    )

    @pydantic.field_validator("command")
    @classmethod
    def _command_not_empty(cls, command: list[str] | None) -> list[str] | None:
        if command is not None and not command:
            raise ValueError("command must be null (built-in trainer) or a non-empty argv list")
        return command


class RetrainSettings(pydantic.BaseModel):
    """Gated retrain (the RETRAIN action). A candidate is only ever registered, never deployed here."""

    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(
        False, description="Allow the RETRAIN action; false = retrain requests are skipped with a reason."
    )
    tracking_uri: str | None = pydantic.Field(
        None, description="MLflow tracking/registry server for retrain runs; null = registry.tracking_uri."
    )
    experiment_name: str = pydantic.Field(
        "drift-agent-retrain", min_length=1, description="MLflow experiment every retrain run is logged in."
    )
    registered_model_name: str | None = pydantic.Field(
        None, description="Registered model that receives candidate versions; null = the registry's model."
    )
    reference_path: pathlib.Path | None = pydantic.Field(
        None,
        description="Reference training data (Parquet in the layout of actions/retrain/dataset.py) added to "
        "recent labelled traffic by strategy full; null = recent traffic only.",
    )
    baseline: Literal["logged_predictions", "serving_model"] = pydantic.Field(
        "logged_predictions",
        description="What the candidate is compared with on the held-out window: the serving model's logged "
        "answers for those requests, or the serving model (alias champion, built-in format) re-run on them.",
    )
    serving_alias: str = pydantic.Field(
        "champion", min_length=1, description="Registry alias of the serving model (warm start, baseline)."
    )
    judge_timeout_s: float = pydantic.Field(
        600.0,
        gt=0,
        description="The gates load and score the candidate in a child process (its code and memory stay "
        "out of the agent); past this the candidate is rejected as unusable.",
    )
    strategy: StrategySettings = pydantic.Field(
        default_factory=StrategySettings, description="Which rows to train on and hold out."
    )
    trainer: TrainerSettings = pydantic.Field(
        default_factory=TrainerSettings, description="The built-in trainer."
    )
    gates: GateSettings = pydantic.Field(
        default_factory=GateSettings, description="Gates a candidate must pass."
    )
    runner: RunnerSettings = pydantic.Field(
        default_factory=RunnerSettings, description="Where training runs."
    )

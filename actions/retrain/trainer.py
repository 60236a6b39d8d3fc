"""The built-in trainer: a small MLP for tabular classification (binary/multiclass) and regression.

Deterministic for a given seed and data on a given device: initialisation and shuffling draw
from a forked, seeded RNG (the caller's RNG state is left alone) and torch runs with
``use_deterministic_algorithms`` (warn-only, restored afterwards).

It is also a command, the reference for the user-command contract that ``runners`` follows::

    python -m actions.retrain.trainer --train train.parquet --output model_dir \
        [--settings trainer.json] [--warm-start serving_model_dir]
    python -m actions.retrain.trainer --job-dir DIR     # a directory staged by actions.retrain.job

A user's own entrypoint receives the same two paths (the Parquet layout is described in
``actions.retrain.dataset``) and writes either this package's model directory
(``model.json`` + ``weights.pt``) or an MLflow pyfunc model directory into the output dir. An
MLflow Project can be that entrypoint (``mlflow run ...`` as the command); nothing here needs one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import pathlib
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import pydantic
import torch

from actions.retrain import config, dataset, job, model

# With at most this many distinct integer labels, task "auto" reads the problem as classification.
AUTO_MAX_CLASSES = 20


class TrainingError(ValueError):
    """The data cannot be trained on as configured; the message says why and what to change."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    model: model.TabularModel
    epochs: int
    final_loss: float
    device: str
    warm_started: bool


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("retrain.trainer.device is cuda but torch sees no CUDA device; use auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def infer_task(labels: dataset.Column, configured: str) -> model.Task:
    if configured != "auto":
        return model.Task(configured)
    if labels.dtype == object:
        distinct = len({model.label_key(v) for v in labels})
        return model.Task.BINARY if distinct <= 2 else model.Task.MULTICLASS
    values = labels.astype(np.float64)
    distinct_values = np.unique(values)
    if np.all(np.mod(values, 1.0) == 0.0) and len(distinct_values) <= AUTO_MAX_CLASSES:
        return model.Task.BINARY if len(distinct_values) <= 2 else model.Task.MULTICLASS
    return model.Task.REGRESSION


@contextlib.contextmanager
def deterministic(seed: int, device: torch.device, *, threads: int = 1) -> Iterator[torch.Generator]:
    """Seeded RNG, deterministic kernels and ``threads`` CPU threads inside; all restored after."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.set_num_threads(threads)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.set_num_threads(previous_threads)
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """torch uses ``threads`` intra-op CPU threads inside (training, benchmarks); restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    train_set: dataset.TrainingSet,
    settings: config.TrainerSettings,
    *,
    warm_start: model.TabularModel | None = None,
) -> TrainResult:
    """Fit a model on ``train_set``; with ``warm_start``, continue from its weights and preprocessing."""
    if train_set.size < 2:
        raise TrainingError(f"{train_set.size} training row(s): at least 2 are needed")
    device = resolve_device(settings.device)
    task = warm_start.task if warm_start is not None else infer_task(train_set.labels, settings.task)
    with deterministic(settings.seed, device, threads=settings.cpu_threads) as generator:
        if warm_start is None:
            fitted = _new_model(train_set, settings, task)
            epochs = settings.epochs
        else:
            fitted = _warm_copy(warm_start)
            epochs = settings.incremental_epochs
        fitted.network.to(device)
        inputs = fitted.encode(train_set.features)
        targets = _targets(fitted, train_set.labels).to(device)
        loss = _fit(fitted, inputs, targets, settings, epochs=epochs, generator=generator)
    return TrainResult(fitted, epochs, loss, str(device), warm_start is not None)


def _new_model(
    train_set: dataset.TrainingSet, settings: config.TrainerSettings, task: model.Task
) -> model.TabularModel:
    preprocessor = model.Preprocessor.fit(train_set.features, max_categories=settings.max_categories)
    if preprocessor.width == 0:
        raise TrainingError("no usable feature: every feature column is empty")
    hidden = tuple(settings.hidden_sizes)
    if task is model.Task.REGRESSION:
        values = _regression_targets(train_set.labels)
        std = float(values.std())
        network = model.build_network(preprocessor.width, hidden, 1)
        return model.TabularModel(
            task,
            preprocessor,
            hidden,
            network,
            target_mean=float(values.mean()),
            target_std=std if std > 0 else 1.0,
        )
    classes = tuple(sorted({model.label_key(v) for v in train_set.labels}))
    if len(classes) < 2:
        raise TrainingError(f"every label is {classes[0]!r}: a classifier needs at least two classes")
    if task is model.Task.BINARY and len(classes) != 2:
        raise TrainingError(
            f"retrain.trainer.task is binary but the labels hold {len(classes)} classes; "
            "use multiclass or auto"
        )
    positive = None
    if task is model.Task.BINARY:
        positive = settings.positive_class or ("1" if "1" in classes else classes[-1])
        if positive not in classes:
            raise TrainingError(
                f"retrain.trainer.positive_class {positive!r} is not one of the labels {classes}"
            )
    network = model.build_network(preprocessor.width, hidden, len(classes))
    return model.TabularModel(task, preprocessor, hidden, network, classes=classes, positive_class=positive)


def _warm_copy(serving: model.TabularModel) -> model.TabularModel:
    network = model.build_network(serving.preprocessor.width, serving.hidden_sizes, serving.output_width)
    network.load_state_dict({k: v.detach().cpu().clone() for k, v in serving.network.state_dict().items()})
    return dataclasses.replace(serving, network=network)


def _regression_targets(labels: dataset.Column) -> np.ndarray:
    try:
        return labels.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"regression labels must be numbers ({exc}); set retrain.trainer.task") from exc


def _targets(fitted: model.TabularModel, labels: dataset.Column) -> torch.Tensor:
    if fitted.task is model.Task.REGRESSION:
        values = (_regression_targets(labels) - fitted.target_mean) / fitted.target_std
        return torch.as_tensor(values, dtype=torch.float32).reshape(-1, 1)
    index = {name: i for i, name in enumerate(fitted.classes)}
    keys = [model.label_key(v) for v in labels]
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise TrainingError(
            f"labels {unknown} are not classes of the serving model {list(fitted.classes)}: "
            "an incremental retrain cannot add classes; use strategy full or sliding"
        )
    return torch.as_tensor([index[k] for k in keys], dtype=torch.long)


def _fit(
    fitted: model.TabularModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: config.TrainerSettings,
    *,
    epochs: int,
    generator: torch.Generator,
) -> float:
    network = fitted.network
    optimiser = torch.optim.Adam(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    loss_fn: torch.nn.Module = (
        torch.nn.MSELoss() if fitted.task is model.Task.REGRESSION else torch.nn.CrossEntropyLoss()
    )
    rows = inputs.shape[0]
    network.train()
    last = math.nan
    for _ in range(epochs):
        order = torch.randperm(rows, generator=generator).to(inputs.device)
        total = 0.0
        for start in range(0, rows, settings.batch_size):
            batch = order[start : start + settings.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(network(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        last = total / rows
    network.eval()
    return last


# -- command ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actions.retrain.trainer", description=__doc__)
    parser.add_argument("--job-dir", type=pathlib.Path, help="a staged job directory (actions.retrain.job)")
    parser.add_argument("--train", type=pathlib.Path, help="training data (Parquet)")
    parser.add_argument("--output", type=pathlib.Path, help="directory to write the model to")
    parser.add_argument("--settings", type=pathlib.Path, help="TrainerSettings as JSON")
    parser.add_argument("--warm-start", type=pathlib.Path, help="model directory to continue from")
    args = parser.parse_args(argv)
    if args.job_dir is not None:
        spec = job.JobSpec(args.job_dir.name, args.job_dir)
        args.train, args.output, args.settings = spec.train_path, spec.output_dir, spec.settings_path
        args.warm_start = spec.warm_start_dir if model.is_model_dir(spec.warm_start_dir) else None
    if args.train is None or args.output is None:
        parser.error("give --job-dir, or both --train and --output")
    try:
        settings = config.TrainerSettings.model_validate(
            json.loads(args.settings.read_text(encoding="utf-8")) if args.settings else {}
        )
        warm = model.TabularModel.load(args.warm_start) if args.warm_start else None
        result = train(dataset.TrainingSet.from_parquet(args.train), settings, warm_start=warm)
    except (pydantic.ValidationError, OSError, ValueError) as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 2
    result.model.save(args.output)
    summary = {"epochs": result.epochs, "final_loss": result.final_loss, "device": result.device}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gated retrain: collect labelled traffic, train, track in MLflow, gate, register a candidate.

Modules: ``dataset`` (TrainingRow/TrainingSet, the Parquet layout), ``strategies`` (full,
sliding, incremental; the held-out window), ``model`` + ``trainer`` (the built-in torch MLP and
its command), ``runners`` (in-process, subprocess, Kubernetes Job), ``tracking`` (MLflow runs and
versions), ``gates`` (performance, slices, latency, memory, leakage), ``handler``
(``RetrainHandler``, the RETRAIN action) and ``config`` (the ``retrain`` settings group).

Only the light modules are imported here: the settings tree imports this package, and torch and
mlflow cost seconds. Import ``actions.retrain.handler`` where the action is built.
"""

from __future__ import annotations

from actions.retrain import config, dataset

RetrainSettings = config.RetrainSettings
TrainingRow = dataset.TrainingRow
TrainingSet = dataset.TrainingSet
from_rows = dataset.from_rows

__all__ = ["RetrainSettings", "TrainingRow", "TrainingSet", "from_rows"]

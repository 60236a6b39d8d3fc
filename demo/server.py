"""The simulated model server: serves whichever version the local target file names, logs every
prediction to Kafka and sends each label a little later, as ground truth arrives in real life."""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping

import numpy as np
import torch

import drift_logger
from actions.targets import base as target_base
from actions.targets import local as local_target
from demo import pacing, workload

log = logging.getLogger(__name__)

# Where labels go (a Kafka producer's send in the demo): topic, JSON bytes.
EmitLabel = Callable[[str, bytes], object]
# The serving-side logger for one model version (drift_logger.PredictionLogger in the demo).
LoggerFor = Callable[[str], drift_logger.PredictionLogger]


@dataclasses.dataclass(frozen=True)
class Answers:
    """What a served model returns for a batch: class labels, and the positive-class probability
    where the model gives one (an MLflow pyfunc of the built-in model answers labels only)."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None


# A served model: features in, answers out.
Predictor = Callable[[np.ndarray, list[str], list[str]], Answers]
# Loads the model behind a registry storage URI (mlflow.pyfunc in the demo).
Loader = Callable[[str], Predictor]


def torch_predictor(model: workload.TabularMLP, *, swap: tuple[int, int] | None = None) -> Predictor:
    """Wrap a model; ``swap`` reproduces a bad release that feeds two columns the wrong way round."""

    def predict(numeric: np.ndarray, regions: list[str], devices: list[str]) -> Answers:
        inputs = numeric
        if swap is not None:
            inputs = numeric.copy()
            inputs[:, [swap[0], swap[1]]] = inputs[:, [swap[1], swap[0]]]
        with torch.no_grad():
            probabilities: np.ndarray = model(workload.encode(inputs, regions, devices)).numpy()
        return Answers((probabilities >= 0.5).astype(np.int64), probabilities)

    return predict


def pyfunc_predictor(model_uri: str) -> Predictor:
    """Load a registered model the way an MLflow model server does: ``mlflow.pyfunc.load_model``.

    The built-in model's pyfunc (actions/retrain/pyfunc_entry.py) takes a DataFrame of the raw
    features and returns class labels as text ('0', '1').
    """
    import mlflow.pyfunc  # noqa: PLC0415 - seconds to import; only a retrained version needs it
    import pandas as pd  # noqa: PLC0415

    loaded = mlflow.pyfunc.load_model(model_uri)

    def predict(numeric: np.ndarray, regions: list[str], devices: list[str]) -> Answers:
        frame = pd.DataFrame({name: numeric[:, i] for i, name in enumerate(workload.NUMERIC)})
        frame["region"] = regions
        frame["device"] = devices
        labels = np.asarray(loaded.predict(frame)).reshape(-1)
        return Answers(np.array([int(float(label)) for label in labels], dtype=np.int64))

    return predict


@dataclasses.dataclass
class ServerStats:
    served: int = 0
    labels_sent: int = 0
    errors: int = 0
    per_version: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # Every traffic split the server actually served, in order: (stable, canary or None, percent).
    splits: list[tuple[str, str | None, int]] = dataclasses.field(default_factory=list)


class SimulatedServer:
    """Serves ``rate`` requests per second in micro-batches, in a thread.

    Versions in ``predictors`` are already loaded; any other version is loaded from the model
    URI the target file gives for it (``loader``, mlflow.pyfunc by default) and kept by version.

    Reported latency is simulated: a seeded time in the network and queue around
    ``base_latency_ms`` plus ``extra_latency_ms`` of the version. Timing the model call itself
    would mostly measure this process's other threads (the agent shares the interpreter here;
    a real server runs in its own pod), and that noise made latency alarms flap.
    """

    def __init__(
        self,
        *,
        predictors: Mapping[str, Predictor],
        target_path: pathlib.Path,
        logger_for: LoggerFor,
        emit_label: EmitLabel,
        labels_topic: str,
        seed: int,
        rate: float = 2000.0,
        batch: int = 50,
        label_delay_s: float = 0.5,
        base_latency_ms: float = 20.0,
        extra_latency_ms: Mapping[str, float] | None = None,
        loader: Loader = pyfunc_predictor,
    ) -> None:
        self.predictors = dict(predictors)
        self.target_path = target_path
        self.logger_for = logger_for
        self.emit_label = emit_label
        self.labels_topic = labels_topic
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.batch = batch
        self.label_delay_s = label_delay_s
        self.base_latency_ms = base_latency_ms
        # Extra time per request by version: how the demo makes a canary's latency regress.
        self.extra_latency_ms = dict(extra_latency_ms or {})
        self.loader = loader
        self.load_failures: dict[str, str] = {}
        self.schedule = workload.Schedule()
        self.index = 0
        self.stats = ServerStats()
        self.lock = threading.Lock()
        self._labels = pacing.DelayedLabels(label_delay_s, lambda record: emit_label(labels_topic, record))
        self._ticker = pacing.Ticker("simulated-server", self._tick, batch / rate)

    def start(self) -> SimulatedServer:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop(timeout_s=5)

    def inject(self, change: Callable[[workload.Schedule, int], workload.Schedule]) -> int:
        """Change the traffic from the next request on; returns the record index it starts at."""
        with self.lock:
            self.schedule = change(self.schedule, self.index)
            return self.index

    def serve_like(self, version: str, existing: str, *, extra_latency_ms: float = 0.0) -> None:
        """Serve ``version`` with the model already loaded for ``existing`` (a rebuild of it),
        ``extra_latency_ms`` slower per request."""
        with self.lock:
            self.predictors[version] = self.predictors[existing]
            self.extra_latency_ms[version] = extra_latency_ms

    def served(self, version: str) -> int:
        with self.lock:
            return self.stats.per_version[version]

    def _serving(self) -> local_target.LocalState:
        return local_target.read_state(self.target_path)

    def _tick(self) -> None:
        try:
            self._serve_batch()
        except target_base.TargetError as exc:  # a half-edited file: serve on next tick
            log.warning("simulated server: %s", exc)
        self.stats.labels_sent += self._labels.send_due()

    def _predictor(self, version: str, model_uri: str | None) -> Predictor | None:
        with self.lock:
            known = self.predictors.get(version)
        if known is not None:
            return known
        if version in self.load_failures or not model_uri:
            return None
        try:
            loaded = self.loader(model_uri)
        except Exception as exc:  # a model that cannot load answers errors; it never stops serving
            self.load_failures[version] = f"{type(exc).__name__}: {exc}"
            log.warning("simulated server: version %s from %s does not load: %s", version, model_uri, exc)
            return None
        with self.lock:
            self.predictors[version] = loaded
        return loaded

    def _serve_batch(self) -> None:
        with self.lock:
            start, schedule = self.index, self.schedule
            self.index += self.batch
        numeric, regions, devices, labels = workload.sample(self.rng, schedule, start, self.batch)
        # A null input is imputed with the training mean (0), as serving code does.
        imputed = np.nan_to_num(numeric, nan=0.0)
        embeddings = schedule.encoder.embed(imputed)
        state = self._serving()
        canary = state.canary_version if state.canary_percent > 0 else None
        split = (state.stable_version, canary, state.canary_percent if canary else 0)
        with self.lock:
            if not self.stats.splits or self.stats.splits[-1] != split:
                self.stats.splits.append(split)
        to_canary = (
            self.rng.random(self.batch) * 100 < state.canary_percent if canary else np.zeros(self.batch, bool)
        )
        now = time.time()
        for version, uri, mask in (
            (state.stable_version, state.stable_model_uri, ~to_canary),
            (canary, state.canary_model_uri, to_canary),
        ):
            if version is None or not mask.any():
                continue
            rows = np.flatnonzero(mask)
            predictor = self._predictor(version, uri)
            answers = None
            if predictor is not None:
                answers = predictor(imputed[rows], [regions[i] for i in rows], [devices[i] for i in rows])
            network_ms = self.base_latency_ms * np.exp(0.1 * self.rng.standard_normal(len(rows)))
            latency_ms = network_ms + self.extra_latency_ms.get(version, 0.0)
            for offset, row in enumerate(rows):
                probability = None
                if answers is not None and answers.probabilities is not None:
                    probability = float(answers.probabilities[offset])
                self._log(
                    version=version,
                    numeric=numeric[row],
                    embedding=embeddings[row],
                    region=regions[row],
                    device=devices[row],
                    prediction=None if answers is None else int(answers.labels[offset]),
                    probability=probability,
                    label=int(labels[row]),
                    latency_ms=float(latency_ms[offset]),
                    now=now,
                )

    def _log(
        self,
        *,
        version: str,
        numeric: np.ndarray,
        embedding: np.ndarray,
        region: str,
        device: str,
        prediction: int | None,
        probability: float | None,
        label: int,
        latency_ms: float,
        now: float,
    ) -> None:
        request_id = uuid.UUID(int=int(self.rng.integers(0, 2**63)) << 64 | self.stats.served).hex
        features: dict[str, float | str | None] = {
            name: None if math.isnan(v) else round(float(v), 5)
            for name, v in zip(workload.NUMERIC, numeric, strict=True)
        }
        features["region"] = region
        features["device"] = device
        # The same one-call logger a real model server uses (drift_logger): buffered, never blocking.
        self.logger_for(version).log(
            request_id,
            features,
            prediction,
            confidence=None if probability is None else round(max(probability, 1 - probability), 5),
            latency_ms=round(latency_ms, 4),
            status="ok" if prediction is not None else "error",
            # A row of the batch's array, held by reference: the logger's sender thread writes it.
            embeddings={workload.EMBEDDING: embedding},
        )
        with self.lock:
            self.stats.served += 1
            self.stats.per_version[version] += 1
            if prediction is None:
                self.stats.errors += 1
        if prediction is None:
            return  # a failed request gets no prediction, so no ground truth is joined to it
        self._labels.add(request_id, label, now)

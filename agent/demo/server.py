"""The simulated model server: serves whichever version the local target file names, logs every
prediction to Kafka and sends each label a little later, as ground truth arrives in real life."""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping

import numpy as np
import torch

import drift_logger
from actions.targets import local as local_target
from agent.demo import workload

# Where labels go (a Kafka producer's send in the demo): topic, JSON bytes.
EmitLabel = Callable[[str, bytes], object]
# The serving-side logger for one model version (drift_logger.PredictionLogger in the demo).
LoggerFor = Callable[[str], drift_logger.PredictionLogger]
# A served model: features in, positive-class probabilities out.
Predictor = Callable[[np.ndarray, list[str], list[str]], np.ndarray]


def torch_predictor(model: workload.TabularMLP, *, swap: tuple[int, int] | None = None) -> Predictor:
    """Wrap a model; ``swap`` reproduces a bad release that feeds two columns the wrong way round."""

    def predict(numeric: np.ndarray, regions: list[str], devices: list[str]) -> np.ndarray:
        inputs = numeric
        if swap is not None:
            inputs = numeric.copy()
            inputs[:, [swap[0], swap[1]]] = inputs[:, [swap[1], swap[0]]]
        with torch.no_grad():
            probabilities: np.ndarray = model(workload.encode(inputs, regions, devices)).numpy()
        return probabilities

    return predict


@dataclasses.dataclass
class ServerStats:
    served: int = 0
    labels_sent: int = 0
    per_version: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class SimulatedServer:
    """Serves ``rate`` requests per second in micro-batches, in a thread."""

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
        extra_latency_ms: Mapping[str, float] | None = None,
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
        # Extra time per request by version: how the demo makes a canary's latency regress.
        self.extra_latency_ms = dict(extra_latency_ms or {})
        self.schedule = workload.Schedule()
        self.index = 0
        self.stats = ServerStats()
        self.lock = threading.Lock()
        self._labels: collections.deque[tuple[float, bytes]] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-server", daemon=True)

    def start(self) -> SimulatedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def inject(self, change: Callable[[workload.Schedule, int], workload.Schedule]) -> int:
        """Change the traffic from the next request on; returns the record index it starts at."""
        with self.lock:
            self.schedule = change(self.schedule, self.index)
            return self.index

    def _serving(self) -> local_target.LocalState:
        return local_target.read_state(self.target_path)

    def _run(self) -> None:
        interval = self.batch / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._serve_batch()
            self._send_due_labels()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def _serve_batch(self) -> None:
        with self.lock:
            start, schedule = self.index, self.schedule
            self.index += self.batch
        numeric, regions, devices, labels = workload.sample(self.rng, schedule, start, self.batch)
        state = self._serving()
        canary = state.canary_version if state.canary_percent > 0 else None
        to_canary = (
            self.rng.random(self.batch) * 100 < state.canary_percent if canary else np.zeros(self.batch, bool)
        )
        now = time.time()
        for version, mask in ((state.stable_version, ~to_canary), (canary, to_canary)):
            if version is None or not mask.any():
                continue
            rows = np.flatnonzero(mask)
            started = time.perf_counter()
            probabilities = self.predictors[version](
                numeric[rows], [regions[i] for i in rows], [devices[i] for i in rows]
            )
            # CPU timing of the micro-batch each request rode in (no GPU here: no gpu_latency_ms).
            latency_ms = (time.perf_counter() - started) * 1000 + self.extra_latency_ms.get(version, 0.0)
            for offset, row in enumerate(rows):
                self._log(
                    version=version,
                    numeric=numeric[row],
                    region=regions[row],
                    device=devices[row],
                    probability=float(probabilities[offset]),
                    label=int(labels[row]),
                    latency_ms=latency_ms * (0.9 + 0.2 * self.rng.random()),
                    now=now,
                )

    def _log(
        self,
        *,
        version: str,
        numeric: np.ndarray,
        region: str,
        device: str,
        probability: float,
        label: int,
        latency_ms: float,
        now: float,
    ) -> None:
        request_id = uuid.UUID(int=int(self.rng.integers(0, 2**63)) << 64 | self.stats.served).hex
        prediction = 1 if probability >= 0.5 else 0
        features: dict[str, float | str] = {
            name: round(float(v), 5) for name, v in zip(workload.NUMERIC, numeric, strict=True)
        }
        features["region"] = region
        features["device"] = device
        # The same one-call logger a real model server uses (drift_logger): buffered, never blocking.
        self.logger_for(version).log(
            request_id,
            features,
            prediction,
            confidence=round(max(probability, 1 - probability), 5),
            latency_ms=round(latency_ms, 4),
        )
        label_record = json.dumps({"request_id": request_id, "timestamp": now, "label": label}).encode()
        self._labels.append((time.monotonic() + self.label_delay_s, label_record))
        self.stats.served += 1
        self.stats.per_version[version] += 1

    def _send_due_labels(self) -> None:
        now = time.monotonic()
        while self._labels and self._labels[0][0] <= now:
            self.emit_label(self.labels_topic, self._labels.popleft()[1])
            self.stats.labels_sent += 1

"""Serving-side prediction logger: one JSON record per request to a Kafka topic, never in the way.

In a torch server (three lines)::

    plog = drift_logger.PredictionLogger("kafka:9092", "predictions", model_name="fraud", model_version="7")
    with plog.request(features=row, request_id=request_id) as req:
        req.prediction = model(batch).argmax(dim=1).item()

or ``output = plog.timed(model, batch, features=row)``. Each record follows the prediction-log
contract of drift-agent (``request_id``, ``timestamp``, ``model_name``, ``model_version``,
``features``, ``prediction`` and the optional fields). ``latency_ms`` is host wall time around
the block (``perf_counter``); when the model runs on a CUDA device, ``gpu_latency_ms`` is the
time between two CUDA events recorded on the current stream around it. On CPU, or without
torch, ``gpu_latency_ms`` is left out.

The request path never blocks on the network and never raises: records go to a bounded buffer
and a background thread sends them (see ``drift_logger.sender``). What could not be kept is
counted in ``stats()``. Call ``close(timeout_s)`` at shutdown to flush.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import random
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

from drift_logger import sender as sender_mod
from drift_logger import timing, vectors

log = logging.getLogger(__name__)

Clock = Callable[[], float]

METRIC_PREFIX: Final = "drift_logger_"
_ERROR_PREDICTION: Final = ""  # the contract needs a prediction; a failed request has none
# True when every feature value is a plain scalar: the usual record, checked in one C-level pass.
_all_plain: Final = vectors.PLAIN_TYPES.issuperset


@dataclasses.dataclass(frozen=True, slots=True)
class LoggerStats:
    """Counters since start, plus what the logger holds right now.

    Every ``log()`` call ends in exactly one of ``logged``, ``sampled_out``,
    ``dropped_buffer_full`` or ``dropped_invalid`` (bad input); a logged record then ends in
    ``sent``, ``dropped_invalid`` (it could not be serialised, or the broker refused it for
    good), ``dropped_on_close``, or is still ``buffered`` / ``in_flight``.
    """

    logged: int
    sampled_out: int
    sent: int
    send_errors: int  # failed attempts (each is retried)
    connect_errors: int  # failed attempts to create the producer
    dropped_buffer_full: int
    dropped_invalid: int
    dropped_on_close: int
    buffered: int
    in_flight: int
    peak_held: int  # most records held at once (buffered + in flight); never above max_buffer

    @property
    def dropped(self) -> int:
        return self.dropped_buffer_full + self.dropped_invalid + self.dropped_on_close


_GAUGES: Final = frozenset({"buffered", "in_flight", "peak_held"})


class RequestScope:
    """What one ``with logger.request(...) as req`` block fills in (set ``req.prediction``)."""

    __slots__ = (
        "_gpu",
        "_logger",
        "_started",
        "confidence",
        "embeddings",
        "features",
        "prediction",
        "probabilities",
        "request_id",
        "segment",
        "status",
    )

    def __init__(
        self,
        logger: PredictionLogger,
        features: Mapping[str, Any],
        request_id: str | None,
        segment: Mapping[str, str] | None,
        gpu: timing.GpuSpan | None,
        *,
        embeddings: Mapping[str, Any] | None = None,
    ) -> None:
        self._logger = logger
        self.features = features
        self.embeddings = embeddings
        self.request_id = request_id
        self.segment = segment
        self.prediction: Any = None
        self.confidence: float | None = None
        self.probabilities: Mapping[str, float] | None = None
        self.status = "ok"
        self._gpu = gpu
        self._started = 0.0

    def __enter__(self) -> Self:
        if self._gpu is not None:
            try:
                self._gpu.start.record()
            except Exception:  # timing is best effort; the request must go on
                self._gpu = None
        self._started = self._logger.timer()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        latency_ms = (self._logger.timer() - self._started) * 1000.0
        if self._gpu is not None:
            try:
                self._gpu.end.record()
            except Exception:
                self._gpu = None
        status = "error" if exc_type is not None else self.status
        self._logger._emit(
            self.request_id,
            self.features,
            self.prediction,
            confidence=self.confidence,
            probabilities=self.probabilities,
            latency_ms=latency_ms,
            gpu_latency_ms=None,
            status=status,
            segment=self.segment,
            gpu=self._gpu,
            embeddings=self.embeddings,
        )


class _SampledOut:
    """The scope of a request that is not logged: accepts the same attributes, does nothing."""

    prediction: Any = None
    confidence: Any = None
    probabilities: Any = None
    status: str = "ok"
    features: Any = None
    embeddings: Any = None
    request_id: Any = None
    segment: Any = None

    def __setattr__(self, name: str, value: object) -> None:
        # One shared instance: keeping what a request sets would hold its tensors (and the batch
        # output an embedding row is a view of, on the GPU) until the next sampled-out request.
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def default_prediction(output: Any) -> float | str:
    """A model output as a contract prediction: a scalar as is; one row of scores as its argmax."""
    if isinstance(output, int | float | str):
        return output
    count = output.numel() if hasattr(output, "numel") else getattr(output, "size", None)
    if count == 1 and hasattr(output, "item"):
        return output.item()  # type: ignore[no-any-return]
    if hasattr(output, "argmax"):
        return float(output.argmax())  # over the flattened output: one request, one row
    raise TypeError(f"cannot read a prediction from a {type(output).__name__}; pass to_prediction=")


class PredictionLogger:
    """Logs predictions to Kafka from a model server. Thread-safe; one per model version.

    ``bootstrap_servers`` is a ``"host:port,host:port"`` string, a list of them, or a
    zero-argument factory returning a producer (``kafka.KafkaProducer`` or anything with its
    ``send``/``flush``/``close``). ``producer_config`` goes to ``kafka.KafkaProducer`` as is
    (TLS, SASL). ``clock`` gives the record timestamps (epoch seconds) and ``timer`` measures
    latency; ``seed`` makes sampling reproducible. ``gpu_timing``: None = time on the GPU when
    torch is loaded and CUDA is available; False = never; True = always (fails now when there
    is no CUDA device). ``event_factory`` replaces ``torch.cuda.Event`` (tests, other devices).

    Vectors (numpy arrays, torch tensors on any device) are held by reference until the sender
    thread writes them: do not modify one in place after logging it, or pass
    ``copy_vectors=True`` to take a float32 copy on the request thread (see ``vectors``).
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | sender_mod.ProducerFactory,
        topic: str = "predictions",
        *,
        model_name: str,
        model_version: str,
        sample_rate: float = 1.0,
        max_buffer: int = 10_000,
        batch_size: int = 500,
        linger_ms: int = 5,
        clock: Clock = time.time,
        timer: Clock = time.perf_counter,
        seed: int | None = None,
        gpu_timing: bool | None = None,
        event_factory: timing.EventFactory | None = None,
        producer_config: Mapping[str, Any] | None = None,
        retry_backoff_initial_s: float = 0.1,
        retry_backoff_max_s: float = 5.0,
        copy_vectors: bool = False,
    ) -> None:
        _check_name("topic", topic)
        _check_name("model_name", model_name)
        _check_name("model_version", model_version)
        if not (isinstance(sample_rate, int | float) and 0.0 < sample_rate <= 1.0):
            raise ValueError(f"sample_rate must be in (0, 1] (1.0 logs every request), got {sample_rate!r}")
        for name, value in (("max_buffer", max_buffer), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(linger_ms, int) or linger_ms < 0:
            raise ValueError(f"linger_ms must be an integer >= 0, got {linger_ms!r}")
        if retry_backoff_initial_s <= 0 or retry_backoff_max_s <= 0:
            raise ValueError("retry_backoff_initial_s and retry_backoff_max_s must be > 0 seconds")
        self.topic = topic
        self.model_name = model_name
        self.model_version = model_version
        self.sample_rate = float(sample_rate)
        self.copy_vectors = bool(copy_vectors)
        self.clock = clock
        self.timer = timer
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not security
        self._event_factory = self._resolve_events(gpu_timing, event_factory)
        if callable(bootstrap_servers):
            if producer_config:
                raise ValueError("producer_config applies to the built-in producer; configure your factory")
            factory = bootstrap_servers
        else:
            if not bootstrap_servers:
                raise ValueError("bootstrap_servers is empty; give 'host:port' of at least one Kafka broker")
            factory = sender_mod.kafka_producer_factory(
                bootstrap_servers, linger_ms=linger_ms, overrides=dict(producer_config or {})
            )
        # Generated ids: a random per-logger prefix and a counter (a syscall per id would cost
        # ~1 us on the request path; next() on itertools.count is atomic under the GIL).
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count()
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        self._sender = sender_mod.BufferedSender(
            factory,
            topic,
            self._encode,
            max_buffer=max_buffer,
            batch_size=batch_size,
            linger_s=linger_ms / 1000.0,
            backoff_initial_s=retry_backoff_initial_s,
            backoff_max_s=retry_backoff_max_s,
        )

    @property
    def sender_thread(self) -> threading.Thread:
        """The only thread that talks to Kafka on the logger's behalf."""
        return self._sender.thread

    # -- request path -------------------------------------------------------------------------

    def log(
        self,
        request_id: str | None = None,
        features: Mapping[str, Any] | None = None,
        prediction: Any = None,
        *,
        confidence: float | None = None,
        probabilities: Mapping[str, float] | None = None,
        latency_ms: float | None = None,
        gpu_latency_ms: float | None = None,
        status: str = "ok",
        segment: Mapping[str, str] | None = None,
        embeddings: Mapping[str, Any] | None = None,
    ) -> bool:
        """Queue one record; True when it was buffered. Never blocks on I/O, never raises.

        A feature value may be a 1-D vector (numpy array, torch tensor, list of numbers);
        ``embeddings`` maps more vector names to vectors. Arrays are not copied (see the class).
        """
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            self._sender.count_sampled_out()
            return False
        return self._emit(
            request_id,
            features,
            prediction,
            confidence=confidence,
            probabilities=probabilities,
            latency_ms=latency_ms,
            gpu_latency_ms=gpu_latency_ms,
            status=status,
            segment=segment,
            gpu=None,
            embeddings=embeddings,
        )

    def request(
        self,
        *,
        features: Mapping[str, Any],
        request_id: str | None = None,
        segment: Mapping[str, str] | None = None,
        gpu: bool | None = None,
        embeddings: Mapping[str, Any] | None = None,
    ) -> RequestScope | _SampledOut:
        """A ``with`` block timing one request; set ``req.prediction`` inside it.

        An exception leaving the block is logged with ``status="error"`` and re-raised.
        ``gpu=False`` skips CUDA timing for this request (its model ran on the CPU).
        """
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            self._sender.count_sampled_out()
            return _SAMPLED_OUT
        span = None
        if self._event_factory is not None and gpu is not False:
            try:
                span = timing.GpuSpan(self._event_factory(), self._event_factory())
            except Exception:
                span = None
        return RequestScope(self, features, request_id, segment, span, embeddings=embeddings)

    def timed(
        self,
        model: Callable[[Any], Any],
        inputs: Any,
        *,
        features: Mapping[str, Any],
        request_id: str | None = None,
        segment: Mapping[str, str] | None = None,
        to_prediction: Callable[[Any], Any] = default_prediction,
        embeddings: Mapping[str, Any] | None = None,
    ) -> Any:
        """``model(inputs)``, timed and logged; returns the model's output unchanged."""
        scope = self.request(
            features=features,
            request_id=request_id,
            segment=segment,
            gpu=timing.runs_on_cuda(inputs) is not False,
            embeddings=embeddings,
        )
        with scope:
            output = model(inputs)
            if isinstance(scope, RequestScope):
                try:
                    scope.prediction = to_prediction(output)
                except Exception as exc:
                    self._warn_once("to_prediction", f"cannot read a prediction from the output: {exc}")
        return output

    def _emit(
        self,
        request_id: str | None,
        features: Mapping[str, Any] | None,
        prediction: Any,
        *,
        confidence: float | None,
        probabilities: Mapping[str, float] | None,
        latency_ms: float | None,
        gpu_latency_ms: float | None,
        status: str,
        segment: Mapping[str, str] | None,
        gpu: timing.GpuSpan | None,
        embeddings: Mapping[str, Any] | None = None,
    ) -> bool:
        try:
            # A copy of the mapping: the caller may reuse its dict once log() returns.
            feature_values = dict(features) if features is not None else {}
            if not _all_plain(map(type, feature_values.values())):
                self._hold_vectors(feature_values)
            if prediction is None:
                if status != "error":
                    raise ValueError("prediction is missing (set req.prediction, or pass prediction=)")
                prediction = _ERROR_PREDICTION
            record: dict[str, Any] = {
                "request_id": request_id if request_id else f"{self._id_prefix}-{next(self._id_counter)}",
                "timestamp": self.clock(),
                "model_name": self.model_name,
                "model_version": self.model_version,
                "features": feature_values,
                "prediction": prediction,
            }
            if embeddings:
                record["embeddings"] = self._hold_embeddings(embeddings, record["features"])
            if confidence is not None:
                record["confidence"] = confidence
            if probabilities is not None:
                record["probabilities"] = dict(probabilities)
            if latency_ms is not None:
                record["latency_ms"] = latency_ms
            if gpu_latency_ms is not None:
                record["gpu_latency_ms"] = gpu_latency_ms
            if status != "ok":
                record["status"] = status
            if segment is not None:
                record["segment"] = dict(segment)
        except Exception as exc:
            self._sender.count("dropped_invalid")
            self._warn_once(type(exc).__name__, f"prediction log record dropped: {exc}")
            return False
        return self._sender.offer((record, gpu) if gpu is not None else record)

    def _hold_vectors(self, features: dict[str, Any]) -> None:
        for name, value in features.items():
            if type(value) not in vectors.PLAIN_TYPES:
                features[name] = vectors.hold(
                    "features", name, value, copy=self.copy_vectors, scalar_allowed=True
                )

    def _hold_embeddings(self, embeddings: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, Any]:
        held = {}
        for name, value in embeddings.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"embeddings names must be non-empty strings, got {name!r}")
            if name in features:
                raise ValueError(
                    f"{name!r} is both under features and embeddings (one namespace of vector "
                    "features); give it once"
                )
            held[name] = vectors.hold("embeddings", name, value, copy=self.copy_vectors, scalar_allowed=False)
        return held

    # -- sender thread ------------------------------------------------------------------------

    @staticmethod
    def _encode(item: Any) -> tuple[bytes, bytes | None]:
        if type(item) is tuple:
            record, span = item
            elapsed = span.elapsed_ms()
            if elapsed is not None and math.isfinite(elapsed):
                record["gpu_latency_ms"] = elapsed
        else:
            record = item
        value = vectors.encode_record(record).encode("utf-8")
        # Keyed by request id: labels keyed the same way land on the same partition number.
        return value, str(record["request_id"]).encode("utf-8")

    # -- status and shutdown ------------------------------------------------------------------

    def stats(self) -> LoggerStats:
        counters, buffered, in_flight = self._sender.snapshot()
        return LoggerStats(
            logged=counters.logged,
            sampled_out=counters.sampled_out,
            sent=counters.sent,
            send_errors=counters.send_errors,
            connect_errors=counters.connect_errors,
            dropped_buffer_full=counters.dropped_buffer_full,
            dropped_invalid=counters.dropped_invalid,
            dropped_on_close=counters.dropped_on_close,
            buffered=buffered,
            in_flight=in_flight,
            peak_held=counters.peak_held,
        )

    def prometheus_metrics(self) -> dict[str, float]:
        """Plain numbers named as Prometheus would: ``*_total`` counters and gauges.

        No prometheus_client import here; export them with a custom collector (see README).
        """
        snapshot = dataclasses.asdict(self.stats())
        return {
            f"{METRIC_PREFIX}{name}" if name in _GAUGES else f"{METRIC_PREFIX}{name}_total": float(value)
            for name, value in snapshot.items()
        }

    def close(self, timeout_s: float = 10.0) -> bool:
        """Send what is held within ``timeout_s``; True when every record was acknowledged."""
        return self._sender.close(timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _resolve_events(
        self, gpu_timing: bool | None, event_factory: timing.EventFactory | None
    ) -> timing.EventFactory | None:
        if gpu_timing is False:
            return None
        if event_factory is not None:
            return event_factory
        found = timing.cuda_event_factory()
        if gpu_timing is True and found is None:
            raise ValueError(
                "gpu_timing=True but no CUDA device is usable (torch not imported or "
                "torch.cuda.is_available() is False); import torch first or pass gpu_timing=None"
            )
        return found

    def _warn_once(self, key: str, message: str) -> None:
        with self._warn_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("%s (further ones are only counted in stats())", message)


_SAMPLED_OUT: Final = _SampledOut()


def _check_name(field: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")

"""Per-request cost of the prediction logger on CPU.

- ``log()`` against an empty function call with the same arguments, and a sampled-out ``log()``;
- ``with logger.request(...)`` around a tiny torch model against the bare model call;
- ``log()`` with a 768-dimension vector (numpy array, CPU torch tensor) against the empty call
  and against the naive logger that turns it into a list (``.tolist()``) on the request thread,
  plus the sender thread's cost per record (float32, list, JSON).

Two sinks: a producer that accepts and discards each record (the sender thread still drains
and serialises everything, so its CPU share under the GIL is included and memory stays
flat), then the embedded Tansu broker with kafka-python's real producer (adds the client's own
per-record work, which runs on the sender and I/O threads but competes for the same GIL).
Median of per-batch means, ``repeat`` batches of ``number`` calls (timeit): 100k calls for
``log()``. The batches of the two statements compared are interleaved, so a busy machine slows
both alike; quote the differences, not the absolute numbers.
"""

from __future__ import annotations

import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import drift_logger
from demo import broker

LOG_BATCHES = 100
LOG_CALLS_PER_BATCH = 1000
MODEL_BATCHES = 50
MODEL_CALLS_PER_BATCH = 200
FEATURES = {f"f{i}": float(i) for i in range(20)}
WIDE_FEATURES = {f"f{i}": float(i) for i in range(200)}
VECTOR_DIM = 768
VECTOR_BATCHES = 15
VECTOR_CALLS_PER_BATCH = 500


class _Delivered:
    """A send future that has already succeeded."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args, None)

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> None:
        return None


class _DiscardingProducer:
    """Accepts every record and keeps none: the sink without a network."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> _Delivered:
        return _Delivered()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


class _GatedProducer(_DiscardingProducer):
    """Discards records, but ``send`` waits while the gate is shut.

    While a batch of request-thread calls is timed, the sender thread sits in ``send`` (off the
    GIL; it has serialised at most the first record of its batch), so the request thread is
    measured alone; opening the gate then lets the sender serialise everything, timed apart.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> _Delivered:
        self.gate.wait()
        return _Delivered()


def _paired_us(
    first: Callable[[], object],
    second: Callable[[], object],
    number: int,
    repeat: int,
    settle: Callable[[], None],
) -> tuple[float, float]:
    """Median per-call microseconds of two statements, batches interleaved (fair under load).

    ``settle`` runs after each batch, untimed: it waits until the sender has sent everything,
    so each batch starts from the same state and pays for the sender work it caused.
    """
    first_s, second_s = [], []
    for _ in range(repeat):
        first_s.append(timeit.timeit(first, number=number))
        settle()
        second_s.append(timeit.timeit(second, number=number))
        settle()
    return statistics.median(first_s) / number * 1e6, statistics.median(second_s) / number * 1e6


def _drained(*loggers: drift_logger.PredictionLogger, poll_s: float = 0.001) -> Callable[[], None]:
    def wait() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(s.buffered == 0 and s.in_flight == 0 for s in (lg.stats() for lg in loggers)):
                return
            time.sleep(poll_s)
        raise RuntimeError("the sender did not drain within 60 s")

    return wait


def _empty(request_id: str, features: dict[str, float], prediction: float, *, latency_ms: float) -> bool:
    return True


def _measure(sink: str, make: Callable[..., drift_logger.PredictionLogger]) -> None:
    import torch  # noqa: PLC0415 - only this benchmark needs it

    logger = make()
    sampled = make(sample_rate=0.01, seed=1)
    number, repeat = LOG_CALLS_PER_BATCH, LOG_BATCHES
    settle = _drained(logger, sampled)
    try:
        base, logged = _paired_us(
            lambda: _empty("r", FEATURES, 1.0, latency_ms=1.0),
            lambda: logger.log("r", FEATURES, 1.0, latency_ms=1.0),
            number,
            repeat,
            settle,
        )
        _, skipped = _paired_us(
            lambda: _empty("r", FEATURES, 1.0, latency_ms=1.0),
            lambda: sampled.log("r", FEATURES, 1.0, latency_ms=1.0),
            number,
            repeat,
            settle,
        )
        print(f"[{sink}] cost per call, median of {repeat} x {number} calls")
        print(f"  empty call, same arguments      {base:8.2f} us")
        print(f"  log(), 20 features              {logged:8.2f} us   (+{logged - base:.2f} us)")
        print(f"  log(), sampled out (rate 0.01)  {skipped:8.2f} us   (+{skipped - base:.2f} us)")

        torch.set_num_threads(1)
        model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)).eval()
        row = torch.randn(1, 20)

        def bare() -> None:
            with torch.inference_mode():
                model(row).argmax().item()

        def scoped() -> None:
            with torch.inference_mode(), logger.request(features=FEATURES) as req:
                req.prediction = model(row).argmax().item()

        bare_us, scoped_us = _paired_us(bare, scoped, MODEL_CALLS_PER_BATCH, MODEL_BATCHES, settle)
        shape = f"{MODEL_BATCHES} x {MODEL_CALLS_PER_BATCH} calls"
        print(f"  tiny torch MLP (20-32-2, 1 row, CPU, 1 thread), {shape}:")
        print(f"  bare model call                 {bare_us:8.2f} us")
        print(
            f"  with logger.request(...)        {scoped_us:8.2f} us   "
            f"(+{scoped_us - bare_us:.2f} us, {100 * (scoped_us - bare_us) / bare_us:.1f}%)"
        )
    finally:
        delivered = logger.close(timeout_s=60)
        sampled.close(timeout_s=60)
    stats = logger.stats()
    print(
        f"  sent {stats.sent} of {stats.logged} records, dropped {stats.dropped} (all delivered: {delivered})"
    )


def _vector_costs(
    statements: dict[str, Callable[[], object]],
    logger: drift_logger.PredictionLogger,
    gate: threading.Event,
) -> dict[str, tuple[float, float]]:
    """Per name: median request-thread us per call, median sender us per record (interleaved)."""
    drained = _drained(logger, poll_s=0.0002)  # fine enough to time a drain of ~1 ms
    request_s: dict[str, list[float]] = {name: [] for name in statements}
    sender_s: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(VECTOR_BATCHES):
        for name, statement in statements.items():
            request_s[name].append(timeit.timeit(statement, number=VECTOR_CALLS_PER_BATCH))
            started = time.perf_counter()
            gate.set()
            drained()
            sender_s[name].append(time.perf_counter() - started)
            gate.clear()
    per_call = 1e6 / VECTOR_CALLS_PER_BATCH
    return {
        name: (statistics.median(request_s[name]) * per_call, statistics.median(sender_s[name]) * per_call)
        for name in statements
    }


def _measure_vectors() -> None:
    import numpy as np  # noqa: PLC0415 - only this benchmark needs them
    import torch  # noqa: PLC0415

    producer = _GatedProducer()
    logger = drift_logger.PredictionLogger(
        lambda: producer, "bench", model_name="bench", model_version="1", max_buffer=100_000
    )
    vector = np.random.default_rng(0).normal(size=VECTOR_DIM).astype(np.float32)
    tensor = torch.from_numpy(vector.copy())
    statements: dict[str, Callable[[], object]] = {
        "empty call, same arguments": lambda: _empty("r", FEATURES, 1.0, latency_ms=1.0),
        "log(), 20 features, no vector": lambda: logger.log("r", FEATURES, 1.0, latency_ms=1.0),
        "log(), 200 features, no vector": lambda: logger.log("r", WIDE_FEATURES, 1.0, latency_ms=1.0),
        "log(), numpy vector": lambda: logger.log(
            "r", FEATURES, 1.0, latency_ms=1.0, embeddings={"e": vector}
        ),
        "log(), torch tensor (CPU)": lambda: logger.log(
            "r", FEATURES, 1.0, latency_ms=1.0, embeddings={"e": tensor}
        ),
        "naive: numpy .tolist() here": lambda: logger.log(
            "r", FEATURES, 1.0, latency_ms=1.0, embeddings={"e": vector.tolist()}
        ),
        "naive: tensor .tolist() here": lambda: logger.log(
            "r", FEATURES, 1.0, latency_ms=1.0, embeddings={"e": tensor.tolist()}
        ),
    }
    try:
        costs = _vector_costs(statements, logger, producer.gate)
    finally:
        producer.gate.set()
        logger.close(timeout_s=60)
    base = costs["empty call, same arguments"][0]
    shape = f"median of {VECTOR_BATCHES} x {VECTOR_CALLS_PER_BATCH} calls"
    print(f"[vectors, {VECTOR_DIM} dimensions, float32, discarding sink] cost per record, {shape}")
    print(f"  {'':32} {'request thread':>22} {'sender thread':>14}")
    for name, (request_us, sender_us) in costs.items():
        print(f"  {name:32} {request_us:8.2f} us (+{request_us - base:7.2f}) {sender_us:11.2f} us")
    for kind, held, naive in (
        ("numpy", "log(), numpy vector", "naive: numpy .tolist() here"),
        ("torch", "log(), torch tensor (CPU)", "naive: tensor .tolist() here"),
    ):
        (held_us, held_sender_us), (naive_us, naive_sender_us) = costs[held], costs[naive]
        print(
            f"  {kind}: request thread +{held_us - base:.2f} us instead of +{naive_us - base:.2f} us "
            f"({(naive_us - base) / max(held_us - base, 1e-9):.1f}x less); sender {held_sender_us:.0f} us "
            f"instead of {naive_sender_us:.0f} us ({naive_sender_us / held_sender_us:.1f}x less)"
        )
    stats = logger.stats()
    print(f"  sent {stats.sent} of {stats.logged} records, dropped {stats.dropped}")


def run() -> None:
    _measure_vectors()

    def discarding(**kwargs: Any) -> drift_logger.PredictionLogger:
        return drift_logger.PredictionLogger(
            _DiscardingProducer, "bench", model_name="bench", model_version="1", max_buffer=100_000, **kwargs
        )

    _measure("discarding sink", discarding)
    with broker.EmbeddedBroker() as tansu:

        def kafka(**kwargs: Any) -> drift_logger.PredictionLogger:
            return drift_logger.PredictionLogger(
                tansu.bootstrap_servers,
                "bench",
                model_name="bench",
                model_version="1",
                max_buffer=100_000,
                **kwargs,
            )

        _measure("embedded Tansu broker, kafka-python producer", kafka)


if __name__ == "__main__":
    run()

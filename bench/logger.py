"""Per-request cost of the prediction logger on CPU.

- ``log()`` against an empty function call with the same arguments, and a sampled-out ``log()``;
- ``with logger.request(...)`` around a tiny torch model against the bare model call.

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


def _drained(*loggers: drift_logger.PredictionLogger) -> Callable[[], None]:
    def wait() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(s.buffered == 0 and s.in_flight == 0 for s in (lg.stats() for lg in loggers)):
                return
            time.sleep(0.001)
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


def run() -> None:
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

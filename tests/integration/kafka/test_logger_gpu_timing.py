"""GPU-side latency: the event path on CPU with a host-clock stand-in, and on CUDA when present."""

from __future__ import annotations

import pytest
import torch

import drift_logger
from demo import broker
from drift_logger import timing
from tests.support.logger import helpers

pytestmark = pytest.mark.integration


class EventLog:
    """An event factory that keeps every event it makes, so the test can inspect them."""

    def __init__(self, make: timing.EventFactory) -> None:
        self._make = make
        self.events: list[drift_logger.TimingEvent] = []

    def __call__(self) -> drift_logger.TimingEvent:
        event = self._make()
        self.events.append(event)
        return event


def test_the_event_path_on_cpu_synchronises_only_the_end_event(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    gpu_clock = helpers.StepClock(start=5.0, step=0.003)  # the "device" clock: 3 ms per read
    events = EventLog(lambda: drift_logger.PerfCounterEvent(timer=gpu_clock))
    logger = drift_logger.PredictionLogger(
        kafka_broker.bootstrap_servers,
        topic_name,
        model_name="m",
        model_version="1",
        event_factory=events,
        timer=helpers.StepClock(step=0.010),
    )
    with logger.request(features={"x": 1.0}, request_id="gpu") as req:
        req.prediction = 0.5
    with logger.request(features={"x": 2.0}, request_id="cpu-only", gpu=False) as req:
        req.prediction = 0.25
    assert logger.close(timeout_s=30)

    start, end = events.events  # the gpu=False request made none
    assert isinstance(start, drift_logger.PerfCounterEvent) and isinstance(end, drift_logger.PerfCounterEvent)
    assert end.synchronized and not start.synchronized
    found = {
        obj["request_id"]: obj
        for obj, _ in helpers.read_records(kafka_broker.bootstrap_servers, topic_name, 2)
    }
    assert found["gpu"]["gpu_latency_ms"] == pytest.approx(3.0)
    assert found["gpu"]["latency_ms"] == pytest.approx(10.0)
    assert "gpu_latency_ms" not in found["cpu-only"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_events_time_the_gpu_without_blocking_the_request(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    make_event = timing.cuda_event_factory()
    assert make_event is not None
    events = EventLog(make_event)
    logger = drift_logger.PredictionLogger(
        kafka_broker.bootstrap_servers, topic_name, model_name="m", model_version="1", event_factory=events
    )
    x = torch.ones(4, device="cuda")
    torch.cuda.synchronize()  # the test's own setup, before any timed request

    def busy_model(cycles: int) -> torch.Tensor:
        torch.cuda._sleep(cycles)  # type: ignore[no-untyped-call]  # keeps the GPU busy for a known number of cycles
        return x.sum()

    with logger.request(features={"x": 1.0}, request_id="long") as req:
        req.prediction = "queued"  # no .item(): the request thread does not wait for the GPU
        busy_model(1_000_000_000)
    # The block has exited and the GPU is still busy: the logger did not synchronise here.
    assert not events.events[1].query()  # type: ignore[attr-defined]
    with logger.request(features={"x": 1.0}, request_id="short") as req:
        req.prediction = float(busy_model(10_000_000).item())
    assert logger.close(timeout_s=60)

    found = {
        obj["request_id"]: obj
        for obj, _ in helpers.read_records(kafka_broker.bootstrap_servers, topic_name, 2)
    }
    long_ms, short_ms = found["long"]["gpu_latency_ms"], found["short"]["gpu_latency_ms"]
    assert short_ms > 0
    assert long_ms > 10 * short_ms  # 100x the cycles; a loose bound, not a timing threshold
    # The host latency of the long request excludes the GPU work it did not wait for.
    assert found["long"]["latency_ms"] < long_ms

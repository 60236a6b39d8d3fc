"""The prediction logger against a real Kafka-compatible broker (Tansu on loopback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import drift_logger
from agent.ingest import parsing, records
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.logger import helpers

pytestmark = pytest.mark.integration

WALL = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z, from an injected clock


def make_logger(bootstrap: str, topic: str, **kwargs: object) -> drift_logger.PredictionLogger:
    options: dict[str, object] = {"model_name": "fraud", "model_version": "7", "clock": lambda: WALL}
    options.update(kwargs)
    return drift_logger.PredictionLogger(bootstrap, topic, **options)  # type: ignore[arg-type]


def test_records_arrive_and_parse_with_the_agent_parser(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    logger = make_logger(bootstrap, topic_name)
    for i in range(40):
        assert logger.log(
            f"req-{i}",
            {"amount": float(i), "country": "FR" if i % 2 else "DE", "new_user": i % 3 == 0, "note": None},
            prediction=i % 2,
            probabilities={"0": 0.25, "1": 0.75},
            latency_ms=2.5,
            gpu_latency_ms=1.25,
            segment={"region": "eu"},
        )
    assert logger.close(timeout_s=30)
    stats = logger.stats()
    assert (stats.logged, stats.sent, stats.dropped, stats.buffered, stats.in_flight) == (40, 40, 0, 0, 0)

    found = helpers.read_records(bootstrap, topic_name, 40)
    by_id = {obj["request_id"]: (obj, key) for obj, key in found}
    assert sorted(by_id) == sorted(f"req-{i}" for i in range(40))
    obj, key = by_id["req-3"]
    assert key == b"req-3"  # keyed by request id, like labels, so both co-partition
    parsed = parsing.RecordParser().parse_prediction_obj(obj)
    assert isinstance(parsed, records.PredictionRecord)
    assert parsed.timestamp == WALL
    assert (parsed.model_name, parsed.model_version, parsed.prediction) == ("fraud", "7", 1)
    assert parsed.features == {"amount": 3.0, "country": "FR", "new_user": True, "note": None}
    assert parsed.confidence == 0.75  # derived by the agent from the probabilities
    assert (parsed.latency_ms, parsed.gpu_latency_ms, parsed.status) == (2.5, 1.25, "ok")
    assert parsed.segment == {"region": "eu"}
    assert parsed.extra is None


def test_request_scope_logs_latency_and_no_gpu_field_on_cpu(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    timer = helpers.StepClock(step=0.004)  # each read moves 4 ms
    logger = make_logger(bootstrap, topic_name, timer=timer)
    model = torch.nn.Linear(3, 2)
    row = {"a": 1.0, "b": 2.0, "c": 3.0}
    with logger.request(features=row, request_id="scoped") as req:
        req.prediction = int(model(torch.tensor([[1.0, 2.0, 3.0]])).argmax())
    output = logger.timed(model, torch.tensor([[1.0, 2.0, 3.0]]), features=row, request_id="timed")
    assert output.shape == (1, 2)  # the caller gets the model's output unchanged
    assert logger.close(timeout_s=30)

    found = {obj["request_id"]: obj for obj, _ in helpers.read_records(bootstrap, topic_name, 2)}
    for obj in found.values():
        assert obj["latency_ms"] == pytest.approx(4.0)  # two reads of the step clock
        assert "gpu_latency_ms" not in obj
        assert obj["features"] == row
    assert found["timed"]["prediction"] == float(output.argmax())


def test_model_errors_are_reraised_and_logged_as_status_error(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    logger = make_logger(bootstrap, topic_name)

    def broken_model(_inputs: object) -> object:
        raise RuntimeError("CUDA out of memory (pretend)")

    with pytest.raises(RuntimeError, match="out of memory"):
        logger.timed(broken_model, [1.0], features={"a": 1.0}, request_id="timed-err")
    with pytest.raises(ZeroDivisionError), logger.request(features={"a": 2.0}, request_id="scope-err"):
        _ = 1 / 0
    assert logger.close(timeout_s=30)

    found = {obj["request_id"]: obj for obj, _ in helpers.read_records(bootstrap, topic_name, 2)}
    assert found["timed-err"]["status"] == found["scope-err"]["status"] == "error"
    assert found["scope-err"]["features"] == {"a": 2.0}
    assert "latency_ms" in found["scope-err"]


def test_records_logged_while_the_broker_is_down_arrive_once_it_is_back(tmp_path: object) -> None:
    own = broker.EmbeddedBroker("127.0.0.1", 0).start()
    try:
        bootstrap = own.bootstrap_servers
        own.stop()
        logger = make_logger(
            bootstrap,
            "outage",
            retry_backoff_initial_s=0.05,
            retry_backoff_max_s=0.2,
            producer_config={"bootstrap_timeout_ms": 300},
        )
        for i in range(25):
            assert logger.log(f"r{i}", {"x": float(i)}, prediction=0.5)
        kafka_infra.wait_until(lambda: logger.stats().connect_errors >= 1, what="a failed connection attempt")
        assert logger.stats().sent == 0
        own.start()
        assert logger.close(timeout_s=30)
        stats = logger.stats()
        assert (stats.sent, stats.dropped) == (25, 0)
        got = helpers.read_records(bootstrap, "outage", 25)
        assert sorted(obj["request_id"] for obj, _ in got) == sorted(f"r{i}" for i in range(25))
    finally:
        own.stop()


def test_numpy_values_are_sent_as_numbers_and_unserialisable_ones_are_counted(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    logger = make_logger(bootstrap, topic_name)
    assert logger.log("np", {"x": np.float32(0.5), "y": np.int64(3)}, prediction=np.float64(1.0))
    assert logger.log("bad", {"x": object()}, prediction=1)  # buffered; fails on the sender thread
    assert logger.close(timeout_s=30)
    stats = logger.stats()
    assert (stats.sent, stats.dropped_invalid) == (1, 1)
    ((obj, _),) = helpers.read_records(bootstrap, topic_name, 1)
    assert obj["features"] == {"x": 0.5, "y": 3}
    assert obj["prediction"] == 1.0

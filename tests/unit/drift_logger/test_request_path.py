"""The request path: never waits on the network, never raises, holds a bounded number of records."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import drift_logger
from tests.infra import kafka as kafka_infra
from tests.support.logger import helpers


def gated_logger(factory: helpers.GatedFactory, **kwargs: object) -> drift_logger.PredictionLogger:
    options: dict[str, object] = {"model_name": "fraud", "model_version": "7"}
    options.update(kwargs)
    return drift_logger.PredictionLogger(factory, "predictions", **options)  # type: ignore[arg-type]


def test_log_never_waits_for_the_network_and_counts_drops_when_full() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = gated_logger(factory, max_buffer=1000)
    try:
        assert logger.log("first", {"x": 1.0}, prediction=1)
        # The sender thread is now inside the producer factory, held there by the gate.
        assert factory.entered.wait(timeout=30)
        results = [logger.log(f"r{i}", {"x": float(i)}, prediction=1) for i in range(9_999)]
        # Every call above returned while the only network path was blocked.
        assert not factory.is_open
        stats = logger.stats()
        assert results.count(True) == 999
        assert (stats.logged, stats.dropped_buffer_full, stats.sent) == (1000, 9000, 0)
        assert stats.peak_held == 1000
        factory.open()  # now it connects to a port where nothing listens
        kafka_infra.wait_until(lambda: logger.stats().connect_errors >= 1, what="a failed connection")
        assert factory.callers and all(t is logger.sender_thread for t in factory.callers)
        assert threading.current_thread() not in factory.callers
    finally:
        factory.open()
        delivered = logger.close(timeout_s=0.2)
    assert not delivered
    assert logger.stats().dropped_on_close == 1000


def test_held_records_never_exceed_max_buffer() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = gated_logger(factory, max_buffer=50, batch_size=7)
    try:
        peak = 0
        for i in range(400):
            logger.log(f"r{i}", {"x": 1.0}, prediction=0)
            stats = logger.stats()
            peak = max(peak, stats.buffered + stats.in_flight)
        assert peak == 50
        assert logger.stats().peak_held == 50
        assert logger.stats().dropped_buffer_full == 350
    finally:
        factory.open()
        logger.close(timeout_s=0.1)


def test_sampling_is_seeded_and_counted() -> None:
    def sampled(seed: int) -> drift_logger.LoggerStats:
        factory = helpers.GatedFactory(helpers.closed_address())
        logger = gated_logger(factory, sample_rate=0.25, seed=seed, max_buffer=10_000)
        try:
            with logger.request(features={"x": 1.0}) as req:  # sampled-out scopes accept the same use
                req.prediction = 1
            for i in range(3999):
                logger.log(f"r{i}", {"x": 1.0}, prediction=0)
            return logger.stats()
        finally:
            factory.open()
            logger.close(timeout_s=0.1)

    first, again, other = sampled(7), sampled(7), sampled(8)
    assert first.logged + first.sampled_out == 4000
    assert 850 < first.logged < 1150  # Binomial(4000, 0.25): mean 1000, sd 27
    assert (again.logged, again.sampled_out) == (first.logged, first.sampled_out)
    assert other.logged != first.logged


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan")])
def test_a_bad_sample_rate_is_refused_with_the_fix(rate: float) -> None:
    with pytest.raises(ValueError, match=r"sample_rate must be in \(0, 1\]"):
        drift_logger.PredictionLogger("127.0.0.1:9", "t", model_name="m", model_version="1", sample_rate=rate)


def test_bad_input_is_counted_never_raised() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = gated_logger(factory)
    try:
        assert not logger.log("a", features=42, prediction=1)  # type: ignore[arg-type]
        assert not logger.log("b", {"x": 1.0})  # no prediction
        with logger.request(features={"x": 1.0}):
            pass  # the block never set req.prediction
        assert logger.stats().dropped_invalid == 3
        assert logger.stats().logged == 0
    finally:
        factory.open()
        logger.close(timeout_s=0.2)


def test_stats_as_prometheus_friendly_numbers() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = gated_logger(factory, max_buffer=2)
    try:
        for i in range(5):
            logger.log(f"r{i}", {"x": 1.0}, prediction=0)
        metrics = logger.prometheus_metrics()
        assert metrics["drift_logger_logged_total"] == 2.0
        assert metrics["drift_logger_dropped_buffer_full_total"] == 3.0
        assert metrics["drift_logger_buffered"] + metrics["drift_logger_in_flight"] == 2.0
        assert all(isinstance(value, float) for value in metrics.values())
        assert set(metrics) >= {"drift_logger_sent_total", "drift_logger_send_errors_total"}
    finally:
        factory.open()
        logger.close(timeout_s=0.1)


def test_the_package_imports_without_the_agent_or_heavy_dependencies() -> None:
    heavy = [
        "kafka",
        "torch",
        "numpy",
        "pydantic",
        "pydantic_settings",
        "prometheus_client",
        "mlflow",
        "agent",
    ]
    code = f"import sys, drift_logger\nprint(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


def test_constructor_errors_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="model_version must be a non-empty string"):
        drift_logger.PredictionLogger("127.0.0.1:9", "t", model_name="m", model_version="")
    with pytest.raises(ValueError, match="bootstrap_servers is empty"):
        drift_logger.PredictionLogger("", "t", model_name="m", model_version="1")
    with pytest.raises(ValueError, match="max_buffer must be a positive integer"):
        drift_logger.PredictionLogger("127.0.0.1:9", "t", model_name="m", model_version="1", max_buffer=0)

"""Dead-letter queue without a broker: the bounded retry buffer and the envelope.

Delivery to a real DLQ topic: tests/integration/kafka/test_dlq.py.
"""

from __future__ import annotations

import logging

import prometheus_client
import pytest

from agent.ingest import dead_letters as dlq
from agent.ingest import records, source
from agent.observability import metrics
from demo import broker
from tests.support.kafka import helpers


def test_full_retry_buffer_drops_loudly(topic_name: str, caplog: pytest.LogCaptureFixture) -> None:
    registry = prometheus_client.CollectorRegistry()
    config = helpers.kafka_settings(f"127.0.0.1:{broker.free_port()}", topic_name)
    dead_letters = dlq.DeadLetterQueue(
        config, metrics=metrics.AgentMetrics(registry), max_pending=2, bootstrap_timeout_s=0.2
    )
    caplog.set_level(logging.ERROR, logger="agent.ingest.dead_letters")
    for index in range(5):
        dead_letters.send(records.Rejected(records.OVERSIZE, "big", b"r%d" % index), None)
    assert not dead_letters.flush(timeout_s=0.1)
    assert dead_letters.pending == 2
    assert dead_letters.dropped == 3
    assert registry.get_sample_value("drift_agent_dlq_dropped_total", {"reason": records.OVERSIZE}) == 3
    assert registry.get_sample_value("drift_agent_dlq_total", {"reason": records.OVERSIZE}) == 5
    assert sum("LOST" in r.getMessage() for r in caplog.records) == 3


def test_the_retry_buffer_is_bounded_in_bytes_as_well(topic_name: str) -> None:
    registry = prometheus_client.CollectorRegistry()
    config = helpers.kafka_settings(f"127.0.0.1:{broker.free_port()}", topic_name)
    dead_letters = dlq.DeadLetterQueue(
        config,
        metrics=metrics.AgentMetrics(registry),
        max_pending=1000,
        max_pending_bytes=20_000,
        bootstrap_timeout_s=0.2,
    )
    for index in range(10):  # envelopes of about 4.2 KB: the records bound would keep all ten
        dead_letters.send(records.Rejected(records.OVERSIZE, "big", b"%d" % index + b"x" * 4000), None)
    assert not dead_letters.flush(timeout_s=0.1)
    assert dead_letters.pending == 4 and dead_letters.dropped == 6  # 4 x 4.2 KB fit in 20 KB
    assert registry.get_sample_value("drift_agent_dlq_dropped_total", {"reason": records.OVERSIZE}) == 6
    assert registry.get_sample_value("drift_agent_buffer_evicted_total", {"buffer": "dead_letters"}) == 6
    held = registry.get_sample_value("drift_agent_buffer_bytes", {"buffer": "dead_letters"})
    assert held is not None and 4 * 4000 < held <= 20_000


def test_envelope_truncates_huge_originals_and_says_so() -> None:
    raw = b"y" * 100
    origin = source.RawMessage("p", 3, 42, raw, 1_700_000_000_000)
    envelope = dlq.envelope(
        records.Rejected(records.OVERSIZE, "too big", raw), origin, agent_time=0.0, max_original_bytes=10
    )
    assert envelope["original"] == "y" * 10
    assert envelope["original_truncated"] is True
    assert envelope["original_size"] == 100
    assert (envelope["partition"], envelope["offset"], envelope["timestamp_ms"]) == (3, 42, 1_700_000_000_000)
    assert envelope["agent_time"] == "1970-01-01T00:00:00+00:00"

"""The sidecar loop against the real broker: a crash after a checkpoint loses nothing.

The first loop checkpoints, processes more records, then dies without committing them (its
consumer leaves the group, as a killed pod's is evicted after the session timeout). The second loop
restores the checkpoint and Kafka redelivers everything after it: every window closes at least
once, at the same record indices as an uninterrupted run.
"""

from __future__ import annotations

import json
import pathlib
import time

import kafka
import prometheus_client
import pytest

from agent import settings as settings_mod
from agent.pipeline import engine as engine_mod
from agent.runtime import checkpoint
from agent.runtime import sidecar as runner
from demo import broker

RECORDS, WINDOW, REFERENCE = 2500, 500, 500
pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str) -> None:
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for index in range(RECORDS):
        record = {
            "request_id": f"r{index}",
            "timestamp": 1_700_000_000 + index,
            "model_name": "m",
            "model_version": "1",
            "features": {"a": (index * 7919) % 1000 / 1000, "b": "xyz"[index % 3]},
            "prediction": index % 2,
        }
        producer.send(topic, json.dumps(record).encode())
    producer.flush()
    producer.close()


def make_settings(bootstrap: str, topic: str, state: pathlib.Path) -> settings_mod.AgentSettings:
    return settings_mod.AgentSettings(
        kafka={
            "bootstrap_servers": bootstrap,
            "predictions_topic": topic,
            "dead_letter_topic": topic + ".dlq",
            "group_id": topic + "-group",
            "max_poll_records": 100,
        },
        window={"size": WINDOW},
        reference={"source": "first_n", "first_n": REFERENCE},
        runtime={"state_dir": str(state)},
        detectors={"detectors": {"data_drift": {}}},
    )


def sidecar(
    settings: settings_mod.AgentSettings, closed: list[int], engine: engine_mod.Engine, start: int
) -> runner.Sidecar:
    return runner.Sidecar(
        kafka=settings.kafka,
        mapping=settings.mapping,
        kserve_settings=settings.kserve,
        runtime=settings.runtime,
        engine=engine,
        metrics_registry=prometheus_client.CollectorRegistry(),
        on_evaluation=lambda evaluation: closed.append(evaluation.window.last_record_index),
        checkpoint_interval_s=1e9,  # checkpoints only when the test says so
        start_index=start,
    )


def step_until(loop: runner.Sidecar, records: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while loop.stats.records < records and time.monotonic() < deadline:
        loop.step()
    assert loop.stats.records >= records, f"only {loop.stats.records} records consumed in {timeout_s}s"


def test_crash_after_checkpoint_loses_nothing(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, tmp_path: pathlib.Path
) -> None:
    kafka_broker.create_topics([topic_name, topic_name + ".dlq"])
    produce(kafka_broker.bootstrap_servers, topic_name)
    settings = make_settings(kafka_broker.bootstrap_servers, topic_name, tmp_path)
    closed: list[int] = []

    first_engine = engine_mod.build(settings, decide=None, clock=time.time, reference_records=None)
    first = sidecar(settings, closed, first_engine, 0)
    step_until(first, 1200)
    assert first.make_durable()
    committed = first.stats.records
    step_until(first, 1900)
    # Dies: no hook of the loop runs (the revocation hook would checkpoint, as a graceful
    # shutdown does); its consumer just leaves the group, as a killed pod's is evicted.
    first.source.on_revoked = None
    first.source.close()

    restored = checkpoint.restore(settings.runtime.state_dir)
    assert restored is not None and restored.index == committed
    second = sidecar(settings, closed, restored.engine, restored.index)
    step_until(second, RECORDS - committed)

    expected = {REFERENCE + WINDOW * k - 1 for k in range(1, (RECORDS - REFERENCE) // WINDOW + 1)}
    assert set(closed) == expected
    # Windows the first loop closed after its checkpoint close again: at least once, not lost.
    assert len(closed) > len(expected)
    assert second.stats.records == RECORDS - committed
    assert first.stats.records >= 1900

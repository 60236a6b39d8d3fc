"""What the Lease holder needs from the evaluators, shared through Kafka: closed windows and
state for the canary, label-joined rows for a retrain."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import kafka
import numpy as np
import pytest

from actions.canary import state as canary_state
from agent import settings as settings_mod
from agent.ingest import records
from agent.respond import training
from agent.runtime import canary_sharing, topic_follower, training_sharing
from demo import broker
from detectors import window as window_mod
from tests.infra import kafka as kafka_infra
from tests.support.canary import factories as f

# The followers read from the end of a topic: they must have found it before anything is produced.
FIND_END_S = 30.0


def wait_positioned(*followers: topic_follower.TopicFollower) -> None:
    for follower in followers:
        assert follower.positioned.wait(FIND_END_S), "the follower never found where to read from"


pytestmark = pytest.mark.integration


def window(version: str, size: int = 50, seed: int = 0) -> window_mod.Window:
    rng = np.random.default_rng(seed)
    return window_mod.Window(
        features={"x": rng.normal(size=size)},
        gpu_latency_ms=rng.uniform(1, 5, size=size),
        timestamps=np.arange(size, dtype=np.float64),
        model_version=version,
        last_record_index=size - 1,
    )


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, window_mod.Window]] = []
        self.labelled: list[bool] = []

    def __call__(self, model: str, received: window_mod.Window, labelled: bool) -> None:
        with self.lock:
            self.items.append((model, received))
            self.labelled.append(labelled)

    def wait(self, count: int) -> list[tuple[str, window_mod.Window]]:
        kafka_infra.wait_until(lambda: len(self.items) >= count, what=f"{count} windows")
        with self.lock:
            return list(self.items)


@pytest.fixture
def config(kafka_broker: broker.EmbeddedBroker, topic_name: str) -> settings_mod.KafkaSettings:
    kafka_broker.create_topics([topic_name])
    return settings_mod.KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)


@pytest.fixture
def producer(config: settings_mod.KafkaSettings) -> Iterator[kafka.KafkaProducer]:
    sender = kafka.KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all")
    yield sender
    sender.close()


def test_windows_reach_every_follower_only_while_the_model_serves_two_versions(
    config: settings_mod.KafkaSettings, producer: kafka.KafkaProducer, topic_name: str
) -> None:
    received = [Received(), Received()]
    followers = [canary_sharing.window_follower(config, topic_name, r) for r in received]
    try:
        for follower in followers:
            follower.start()
        wait_positioned(*followers)
        publisher = canary_sharing.WindowPublisher(producer, topic_name)
        sent = [
            publisher.publish("churn", window("1", seed=0), labelled=False),  # one version: kept back
            publisher.publish("churn", window("1", seed=1), labelled=False),
            publisher.publish("churn", window("2", seed=2), labelled=False),  # the candidate appears
            publisher.publish("churn", window("1", seed=3), labelled=False),
            publisher.publish("churn", window("2", seed=4), labelled=True),  # label-joined: for performance
        ]
        producer.flush()
        assert sent == [False, False, True, True, True]
        for each in received:
            got = each.wait(3)
            time.sleep(0.5)
            assert len(each.items) == 3  # nothing more came
            assert [(model, w.model_version) for model, w in got] == [
                ("churn", "2"),
                ("churn", "1"),
                ("churn", "2"),
            ]
            assert each.labelled == [False, False, True]
            expected = window("2", seed=2)
            assert got[0][1].gpu_latency_ms is not None and expected.gpu_latency_ms is not None
            np.testing.assert_array_equal(got[0][1].features["x"], expected.features["x"])
            np.testing.assert_array_equal(got[0][1].gpu_latency_ms, expected.gpu_latency_ms)
            assert got[0][1].last_record_index == expected.last_record_index
    finally:
        for follower in followers:
            follower.stop()


def test_an_unreadable_window_is_skipped_and_the_follower_goes_on(
    config: settings_mod.KafkaSettings, producer: kafka.KafkaProducer, topic_name: str
) -> None:
    received = Received()
    follower = canary_sharing.window_follower(config, topic_name, received)
    try:
        follower.start()
        wait_positioned(follower)
        producer.send(topic_name, key=b"churn", value=b"\x00not a window", partition=0)
        producer.send(topic_name, key=b"churn", value=canary_sharing.encode_window(window("2")), partition=0)
        producer.flush()
        assert [w.model_version for _, w in received.wait(1)] == ["2"]
    finally:
        follower.stop()


def test_the_canary_state_outlives_the_pod_and_is_read_again_on_gaining_the_lease(
    config: settings_mod.KafkaSettings, topic_name: str
) -> None:
    leading = {"a": True, "b": False}
    first = canary_sharing.TableCanaryStore(config, topic_name, "fraud", is_leader=lambda: leading["a"])
    second = canary_sharing.TableCanaryStore(config, topic_name, "fraud", is_leader=lambda: leading["b"])
    other_model = canary_sharing.TableCanaryStore(config, topic_name, "churn", is_leader=lambda: True)
    try:
        assert first.load() is None and second.load() is None
        started = f.started(f.config())
        first.save(started)
        # Another agent (a follower, or a pod restarted on an empty disk) reads what was saved.
        assert second.load() == started
        assert other_model.load() is None  # keyed by model
        advanced = dataclasses.replace(started, step_index=1, phase=canary_state.Phase.PAUSED)
        first.save(advanced)
        assert second.load() == advanced  # a follower reads the topic each time
        # The Lease moves to b: b reads the topic again, then keeps what it saves.
        leading.update(a=False, b=True)
        assert second.load() == advanced
        finished = dataclasses.replace(advanced, phase=canary_state.Phase.PROMOTED)
        second.save(finished)
        assert second.load() == finished
        restarted = canary_sharing.TableCanaryStore(config, topic_name, "fraud", is_leader=lambda: True)
        try:
            assert restarted.load() == finished
        finally:
            restarted.close()
    finally:
        for store in (first, second, other_model):
            store.close()


def record(i: int) -> records.PredictionRecord:
    return records.PredictionRecord(
        f"r{i}", float(i), "churn", "3", {"x": float(i), "c": "red"}, 1.0, confidence=0.9
    )


def test_rows_reach_the_lease_holder_and_a_new_holder_reads_the_newest_back(
    config: settings_mod.KafkaSettings, producer: kafka.KafkaProducer, topic_name: str
) -> None:
    leading = {"a": True, "b": False}
    buffers = {name: training.TrainingBuffer(max_rows=1_000) for name in leading}

    def holds_lease(name: str) -> Callable[[], bool]:
        return lambda: leading[name]

    followers = {
        name: training_sharing.training_follower(
            config, topic_name, buffers[name], max_rows=1_000, is_leader=holds_lease(name)
        )
        for name in leading
    }
    publisher = training_sharing.TrainingRowPublisher(producer, topic_name, batch_rows=100)
    try:
        for follower in followers.values():
            follower.start()
        wait_positioned(followers["a"])  # b does not hold the Lease: it reads nothing yet
        for i in range(250):
            publisher.add(record(i), float(i % 2))
        publisher.flush()  # the last 50 go too
        producer.flush()
        assert publisher.sent_rows == 250
        kafka_infra.wait_until(lambda: len(buffers["a"].rows()) == 250, what="the Lease holder's rows")
        rows = buffers["a"].rows()
        assert [row.request_id for row in rows] == [f"r{i}" for i in range(250)]
        assert rows[3].features == {"x": 3.0, "c": "red"} and rows[3].label == 1.0
        assert rows[3].served_prediction == 1.0 and rows[3].served_score == pytest.approx(0.9)
        assert buffers["b"].rows() == []  # not the Lease holder: reads nothing
        # The Lease moves: b reads the newest batches back, a stops and forgets on its next term.
        leading.update(a=False, b=True)
        kafka_infra.wait_until(lambda: len(buffers["b"].rows()) == 250, what="the new holder's rows")
        assert [row.request_id for row in buffers["b"].rows()] == [f"r{i}" for i in range(250)]
    finally:
        for follower in followers.values():
            follower.stop()

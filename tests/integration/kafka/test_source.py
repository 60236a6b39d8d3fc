"""The consumer-group source against a real Tansu broker: batches, commits, rebalances, outages;
each check on both clients (kafka-python and librdkafka, ``kafka.client``)."""

from __future__ import annotations

import threading
import time

import kafka
import prometheus_client
import pytest

from agent.ingest import consumers, source
from agent.observability import metrics
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration


@pytest.fixture(params=["kafka-python", "librdkafka"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def committed_offset(bootstrap: str, group_id: str, topic: str, partition: int = 0) -> int | None:
    reader = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    try:
        return reader.committed(kafka.TopicPartition(topic, partition))  # type: ignore[no-any-return]
    finally:
        reader.close(autocommit=False)


def test_batches_carry_bytes_and_coordinates(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    values = [helpers.prediction_json(i) for i in range(10)]
    kafka_infra.produce(kafka_broker.bootstrap_servers, topic_name, values, partition=0, key=b"k")
    registry = prometheus_client.CollectorRegistry()
    kafka_source = consumers.open_source(
        helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name, client=client),
        metrics=metrics.AgentMetrics(registry),
    )
    try:
        got = helpers.poll_until(kafka_source, 10)
        assert [m.value for m in got] == values
        assert [m.offset for m in got] == list(range(10))
        assert {(m.topic, m.partition, m.key) for m in got} == {(topic_name, 0, b"k")}
        assert all(m.timestamp_ms > 0 for m in got)
        assert kafka_source.ready
        assert kafka_source.status() == "ok"
        assert registry.get_sample_value("drift_agent_records_in_total", {"topic": topic_name}) == 10
    finally:
        kafka_source.close()


def test_commit_moves_only_the_given_messages(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    kafka_infra.produce(
        kafka_broker.bootstrap_servers, topic_name, [b"m%d" % i for i in range(10)], partition=0
    )
    config = helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name, client=client)
    first = consumers.open_source(config)
    try:
        got = helpers.poll_until(first, 10)
        assert first.commit(got[:6])
        # An older batch committed late must not move the offset back.
        assert first.commit(got[:2])
    finally:
        first.close()
    assert committed_offset(kafka_broker.bootstrap_servers, config.group_id, topic_name) == 6

    second = consumers.open_source(config)
    try:
        rest = helpers.poll_until(second, 4)
        assert [m.value for m in rest] == [b"m%d" % i for i in range(6, 10)]
    finally:
        second.close()


def test_labels_topic_is_consumed_beside_predictions(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    labels_topic = topic_name + ".labels"
    kafka_infra.produce(kafka_broker.bootstrap_servers, topic_name, [b"p0", b"p1"])
    kafka_infra.produce(kafka_broker.bootstrap_servers, labels_topic, [b"l0"])
    config = helpers.kafka_settings(
        kafka_broker.bootstrap_servers, topic_name, labels_topic=labels_topic, client=client
    )
    kafka_source = consumers.open_source(config)
    try:
        got = helpers.poll_until(kafka_source, 3)
        assert sorted((m.topic, m.value) for m in got) == [
            (topic_name, b"p0"),
            (topic_name, b"p1"),
            (labels_topic, b"l0"),
        ]
    finally:
        kafka_source.close()


def test_lag_counts_from_the_last_commit_once_there_is_one(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    kafka_infra.produce(kafka_broker.bootstrap_servers, topic_name, [b"x"] * 50, partition=0)
    registry = prometheus_client.CollectorRegistry()
    config = helpers.kafka_settings(
        kafka_broker.bootstrap_servers, topic_name, max_poll_records=10, client=client
    )
    kafka_source = consumers.open_source(config, metrics=metrics.AgentMetrics(registry), lag_refresh_s=0.0)
    labels = {"topic": topic_name, "partition": "0"}
    try:
        first = helpers.poll_until(kafka_source, 10)
        assert len(first) == 10
        # Nothing committed yet: from the fetch position.
        assert registry.get_sample_value("drift_agent_consumer_lag", labels) == 40
        assert kafka_source.commit(first)
        rest = helpers.poll_until(kafka_source, 40)
        assert len(rest) == 40
        # All read, but only the first ten committed: records that cannot be made durable are lag.
        assert registry.get_sample_value("drift_agent_consumer_lag", labels) == 40
        assert kafka_source.commit(rest)
        kafka_source.poll_batch()
        assert registry.get_sample_value("drift_agent_consumer_lag", labels) == 0
    finally:
        kafka_source.close()


def test_rebalance_tells_the_polling_thread_and_commit_skips_moved_partitions(
    topic_name: str, client: str
) -> None:
    # A broker of its own: after the suite's heavier tests the shared broker's group
    # coordinator can take minutes to settle a two-member rebalance.
    with broker.EmbeddedBroker() as own_broker:
        check_rebalance(own_broker, topic_name, client)


def check_rebalance(kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str) -> None:
    kafka_broker.create_topics([topic_name], partitions=2)
    kafka_infra.produce(kafka_broker.bootstrap_servers, topic_name, [b"a"], partition=0)
    kafka_infra.produce(kafka_broker.bootstrap_servers, topic_name, [b"b"], partition=1)
    config = helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name, client=client)
    revoked: list[tuple[int, list[source.Partition]]] = []
    first = consumers.open_source(config, on_revoked=lambda ps: revoked.append((threading.get_ident(), ps)))
    second = consumers.open_source(config)
    try:
        held = helpers.poll_until(first, 2)
        assert len(first.assignment()) == 2

        # Two sidecars are two processes; here two threads, each polling its own source.
        stop = threading.Event()
        joiner = threading.Thread(target=lambda: [second.poll_batch() for _ in iter(stop.is_set, True)])
        joiner.start()
        try:
            # The first member must keep polling steadily (as the agent's loop does): a member
            # quiet for longer than max_poll_interval_ms is evicted and the join starts over.
            deadline = time.monotonic() + 60.0
            while not (
                not first.poll_batch() and len(first.assignment()) == 1 and len(second.assignment()) == 1
            ):
                assert time.monotonic() < deadline, "timed out waiting for the two members to split"
                time.sleep(0.05)
        finally:
            stop.set()
            joiner.join(timeout=10)
        assert revoked, "on_revoked was not called"
        hook_thread, partitions = revoked[0]
        assert hook_thread == threading.get_ident()
        assert partitions == [source.Partition(topic_name, 0), source.Partition(topic_name, 1)]

        kept = first.assignment()[0].partition
        assert first.commit(held)
        assert committed_offset(kafka_broker.bootstrap_servers, config.group_id, topic_name, kept) == 1
        assert committed_offset(kafka_broker.bootstrap_servers, config.group_id, topic_name, 1 - kept) is None
    finally:
        first.close()
        second.close()


def test_broker_outage_then_recovery_on_the_same_port(topic_name: str, client: str) -> None:
    registry = prometheus_client.CollectorRegistry()
    with broker.EmbeddedBroker() as own_broker:
        kafka_infra.produce(own_broker.bootstrap_servers, topic_name, [b"before"])
        kafka_source = consumers.open_source(
            helpers.kafka_settings(own_broker.bootstrap_servers, topic_name, client=client),
            metrics=metrics.AgentMetrics(registry),
        )
        try:
            assert [m.value for m in helpers.poll_until(kafka_source, 1)] == [b"before"]
            assert registry.get_sample_value("drift_agent_kafka_connected") == 1

            own_broker.stop()

            def down() -> bool:
                return kafka_source.poll_batch() == [] and not kafka_source.ready

            kafka_infra.wait_until(down, what="the source to notice the outage")
            assert registry.get_sample_value("drift_agent_kafka_connected") == 0
            assert "no connection" in kafka_source.status()

            own_broker.restart()
            # Memory storage: the restarted broker is empty, as after a failover to a new cluster.
            kafka_infra.produce(own_broker.bootstrap_servers, topic_name, [b"after"])
            seen: list[bytes] = []

            def consumed_after() -> bool:
                seen.extend(m.value for m in kafka_source.poll_batch())
                return b"after" in seen

            kafka_infra.wait_until(consumed_after, timeout_s=60, what="a record produced after the restart")
            # Ready again once the group has the member back: the restarted broker forgot it, and
            # a re-join on a loaded machine takes as long as the first fetch after the restart.
            kafka_infra.wait_until(
                lambda: bool(kafka_source.poll_batch() or kafka_source.ready), timeout_s=60, what="ready"
            )
            assert kafka_source.ready
        finally:
            kafka_source.close()


def test_starts_before_the_broker_exists(topic_name: str, client: str) -> None:
    port = broker.free_port()
    config = helpers.kafka_settings(f"127.0.0.1:{port}", topic_name, client=client)
    # kafka-python blocks its constructor until a broker answers: not for long here.
    options = {"bootstrap_timeout_s": 0.5} if client == "kafka-python" else {}
    kafka_source = consumers.open_source(config, **options)
    try:
        assert kafka_source.poll_batch() == []
        assert not kafka_source.ready
        with broker.EmbeddedBroker(port=port) as late_broker:
            kafka_infra.produce(late_broker.bootstrap_servers, topic_name, [b"late"])
            assert [m.value for m in helpers.poll_until(kafka_source, 1, timeout_s=60)] == [b"late"]
    finally:
        kafka_source.close()


def test_a_seek_from_the_assignment_hook_is_where_reading_starts(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, client: str
) -> None:
    # The evaluate and act stages seek there (to a state's positions, to a committed offset).
    kafka_infra.produce(
        kafka_broker.bootstrap_servers, topic_name, [b"m%d" % i for i in range(8)], partition=0
    )
    config = helpers.kafka_settings(kafka_broker.bootstrap_servers, topic_name, client=client)
    holder: list[source.Source] = []

    def assigned(partitions: list[source.Partition]) -> None:
        for partition in partitions:
            holder[0].seek(partition, 5)

    kafka_source = consumers.open_source(config, on_assigned=assigned)
    holder.append(kafka_source)
    try:
        got = helpers.poll_until(kafka_source, 3)
        assert [m.offset for m in got] == [5, 6, 7]
        # Between polls, a rewind reads again from there.
        kafka_source.rewind(source.Partition(topic_name, 0), 6)
        again = helpers.poll_until(kafka_source, 2)
        assert [m.value for m in again] == [b"m6", b"m7"]
    finally:
        kafka_source.close()

"""Wide records with labels flowing through the agent's ingest stage stay within the memory budget.

200-feature predictions come first and their labels only after all of them (the worst order for
the label join: every prediction waits), through the real broker, the agent's consumer and its
ingest stage. The join's byte bound (its share of memory.budget_mib) is hit: the oldest
predictions go, counted and exported, and what the join's own code holds (tracemalloc, the
allocations made in label_join.py) stays under the bound.
"""

from __future__ import annotations

import json
import tracemalloc

import kafka
import prometheus_client
import pytest

from agent import settings
from agent.ingest import label_join, source, worker
from agent.observability import metrics
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

RECORDS = 3000
FEATURES = 200
BUDGET_MIB = 16  # the join's share: 35 % = 5.6 MiB, room for ~1 500 of these predictions


def label_json(index: int) -> bytes:
    return json.dumps(
        {"request_id": f"req-{index}", "timestamp": 1_700_000_000 + RECORDS + index, "label": 1}
    ).encode()


def join_allocations() -> int:
    """Bytes alive that were allocated by label_join.py's own lines (entries, their bytes, the dicts)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, label_join.__file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_wide_records_with_labels_stay_within_the_joins_byte_bound(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    labels_topic = f"{topic_name}.labels"
    kafka_infra.produce(
        bootstrap,
        topic_name,
        (helpers.prediction_json(i, n_features=FEATURES) for i in range(RECORDS)),
        partition=0,
    )
    # The labels topic exists from the start (one label of no prediction); the rest come later.
    kafka_infra.produce(bootstrap, labels_topic, [label_json(-1)], partition=0)
    # tracemalloc slows the loop: a group that waits for it.
    config = helpers.kafka_settings(
        bootstrap,
        topic_name,
        labels_topic=labels_topic,
        max_poll_interval_ms=60_000,
        session_timeout_ms=30_000,
    )
    memory = settings.MemorySettings(budget_mib=BUDGET_MIB)
    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    join = worker.join_from(
        3600.0,
        200_000,
        labels_topic,
        lambda: 1_700_000_000.0,
        max_bytes=memory.bytes_for("label_join"),
        metrics=agent_metrics,
    )
    assert join is not None
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024
    )  # as app.py
    stage = helpers.ingest_stage_of(
        config,
        producer,
        agent_metrics,
        fragments_topic=f"{topic_name}.fragments",
        labels_topic=labels_topic,
        join=join,
        max_fragment_records=500,
    )
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    tracemalloc.start()
    most_held = most_allocated = 0
    try:
        # Every prediction is read before its label is even produced: a labels feed lagging behind.
        def consume(count: int, *, measure: bool) -> None:
            nonlocal most_held, most_allocated
            while stage.worker_counts.predictions + stage.worker_counts.labels < count:
                for message in kafka_source.poll_batch():
                    stage.handle(message)
                most_held = max(most_held, join.held_bytes)
                if measure:
                    most_allocated = max(most_allocated, join_allocations())
                stage.make_durable(kafka_source)

        consume(RECORDS + 1, measure=True)
        kafka_infra.produce(bootstrap, labels_topic, (label_json(i) for i in range(RECORDS)), partition=0)
        # Joining decodes records the worker then holds until published: not the join's memory.
        consume(2 * RECORDS + 1, measure=False)
    finally:
        tracemalloc.stop()
        stage.dlq.close(timeout_s=2)
        producer.close(timeout=2)
        kafka_source.close()

    assert stage.worker_counts.predictions == RECORDS
    assert most_held <= join.max_bytes
    assert 0 < most_allocated <= join.max_bytes
    # The estimate is not wildly generous either: the join really held most of what it counted.
    assert most_allocated > 0.5 * most_held
    assert join.evicted_predictions > RECORDS // 3
    # The newest predictions stayed and met their labels; the evicted ones' labels wait as orphans.
    assert join.joined == RECORDS - join.evicted_predictions
    assert stage.worker_counts.joined == join.joined
    evicted = registry.get_sample_value("drift_agent_buffer_evicted_total", {"buffer": "label_join"})
    assert evicted == join.evicted_predictions + join.evicted_labels


def test_a_checkpoint_comes_early_once_its_input_bytes_reach_the_bound(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    """At high rates ``commit_interval_s`` alone would let one checkpoint hold seconds of records:
    ``streams.checkpoint_input_mib`` makes it due as soon as that much input is held."""
    bootstrap = kafka_broker.bootstrap_servers
    values = [helpers.prediction_json(i, n_features=FEATURES) for i in range(300)]
    kafka_infra.produce(bootstrap, topic_name, values, partition=0)
    bound_mib = 0.25  # about 60 of these 200-feature records
    streams = settings.StreamsSettings(commit_interval_s=60, checkpoint_input_mib=bound_mib)
    config = helpers.kafka_settings(bootstrap, topic_name)
    agent_metrics = metrics.AgentMetrics(prometheus_client.CollectorRegistry())
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024)
    stage = helpers.ingest_stage_of(
        config, producer, agent_metrics, fragments_topic=f"{topic_name}.fragments", streams=streams
    )
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    bound = int(bound_mib * 2**20)
    held_at_checkpoint: list[int] = []
    try:
        held = 0
        for message in helpers.poll_until(kafka_source, len(values)):
            assert not stage.due(), f"due with {held} bytes held, under the bound of {bound}"
            stage.handle(message)
            held += len(message.value)
            if stage.due():
                held_at_checkpoint.append(held)
                assert stage.make_durable(kafka_source)
                assert not stage.due()
                committed = kafka_source.committed(source.Partition(topic_name, 0))
                assert committed == message.offset + 1
                held = 0
    finally:
        stage.dlq.close(timeout_s=2)
        producer.close(timeout=2)
        kafka_source.close()
    # Each checkpoint came with the record that reached the bound, not one later.
    assert len(held_at_checkpoint) >= sum(len(v) for v in values) // (bound + max(map(len, values)))
    assert len(held_at_checkpoint) > 1
    record = max(map(len, values))
    assert all(bound <= held < bound + record for held in held_at_checkpoint), held_at_checkpoint

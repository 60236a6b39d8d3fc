"""Vectors through the ingest stage on the real broker: a wrong dimension is dead-lettered with its
reason; valid vectors reach the fragments topic intact and become the window's rows.

Real vectors: scikit-learn's digits (8 x 8 images, 64 dimensions), shipped inside the package.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import kafka
import numpy as np
import prometheus_client
import pytest
from sklearn.datasets import load_digits

from agent.ingest import fragments, parsing, records, source
from agent.observability import metrics
from agent.pipeline import reference, reference_files
from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

VECTOR = "digit"


def record(
    index: int, image: list[float], *, spelling: str | None = "embeddings", **fields: Any
) -> dict[str, Any]:
    """A prediction of the digits model; its image under ``embeddings``, ``features`` or (None) nowhere."""
    made: dict[str, Any] = {
        "request_id": f"req-{index}",
        "timestamp": 1_700_000_000 + index,
        "model_name": "digits",
        "model_version": "v1",
        "features": {"ink": float(sum(image))},
        "prediction": index % 10,
    }
    if spelling == "embeddings":
        made["embeddings"] = {VECTOR: image}
    elif spelling == "features":
        made["features"] = {**made["features"], VECTOR: image}
    return made | fields


def test_a_vector_of_the_wrong_dimension_is_dead_lettered_and_good_ones_reach_the_fragments(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, tmp_path: pathlib.Path
) -> None:
    images = load_digits().data.astype(float).tolist()
    reference_path = tmp_path / "reference.jsonl"
    reference_path.write_text("".join(json.dumps(record(i, images[i])) + "\n" for i in range(200)))
    loaded = reference_files.load_labelled(reference_path, parsing.RecordParser())
    assert loaded.shapes.dims == {VECTOR: 64}
    parser = parsing.RecordParser().with_shapes(loaded.shapes)

    good = [record(i, images[i], spelling="features" if i % 2 else "embeddings") for i in range(200, 220)]
    bad = [
        (
            record(1000, images[1000][:63]),
            records.INVALID_VALUE,
            "field 'embeddings.digit': expected a vector of "
            "64 numbers (its dimension in the reference), got 63",
        ),
        (
            record(1001, [*images[1001], 0.0], spelling="features"),
            records.INVALID_VALUE,
            "field 'features.digit': expected a vector of 64 numbers (its dimension in the reference), "
            "got 65",
        ),
        (
            record(1002, [], spelling=None, features={"ink": 1.0, VECTOR: 3.0}),
            records.WRONG_TYPE,
            "field 'features.digit': expected a vector of 64 numbers (the reference has 'digit' as a "
            "vector), got number 3.0",
        ),
    ]
    stream = [json.dumps(r).encode() for r in good[:10]]
    stream += [json.dumps(r).encode() for r, _, _ in bad]
    stream += [json.dumps(r).encode() for r in good[10:]]
    bootstrap = kafka_broker.bootstrap_servers
    kafka_infra.produce(bootstrap, topic_name, stream, partition=0)

    registry = prometheus_client.CollectorRegistry()
    agent_metrics = metrics.AgentMetrics(registry)
    config = helpers.kafka_settings(bootstrap, topic_name)
    fragments_topic = f"{topic_name}.fragments"
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    stage = helpers.ingest_stage_of(
        config, producer, agent_metrics, fragments_topic=fragments_topic, parser=parser
    )
    kafka_source = source.KafkaSource(config, metrics=agent_metrics)
    try:
        for message in helpers.poll_until(kafka_source, len(stream)):
            stage.handle(message)
        assert stage.make_durable(kafka_source)
    finally:
        stage.dlq.close(timeout_s=5)
        producer.close(timeout=5)
        kafka_source.close()

    envelopes = [json.loads(r.value) for r in kafka_infra.read_topic(bootstrap, config.dead_letter_topic, 3)]
    envelopes.sort(key=lambda e: e["offset"])
    assert [(e["offset"], e["reason"], e["detail"]) for e in envelopes] == [
        (10 + i, reason, detail) for i, (_, reason, detail) in enumerate(bad)
    ]
    assert registry.get_sample_value("drift_agent_dlq_total", {"reason": records.INVALID_VALUE}) == 2
    assert registry.get_sample_value("drift_agent_dlq_total", {"reason": records.WRONG_TYPE}) == 1

    (published,) = kafka_infra.read_topic(bootstrap, fragments_topic, 1)
    fragment = fragments.decode(published.value)
    assert [entry.offset for entry in fragment.entries] == [*range(10), *range(13, 23)]
    window = reference.to_window(
        [entry.record for entry in fragment.entries], reference.FeatureSchema.infer(loaded.records)
    )
    expected = np.asarray(
        [r["embeddings"][VECTOR] if "embeddings" in r else r["features"][VECTOR] for r in good]
    )
    np.testing.assert_array_equal(window.vectors[VECTOR], expected.astype(np.float32))

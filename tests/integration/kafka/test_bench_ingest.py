"""bench/ingest.py measures the real ingest path: records are parsed, published as fragments
and committed."""

from __future__ import annotations

import kafka
import pytest

from bench import ingest
from demo import broker
from tests.infra import kafka as kafka_infra

pytestmark = pytest.mark.integration


def test_compare_runs_both_paths_over_the_same_records(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    stream = list(ingest.iter_records(2 * ingest.WINDOW_SIZE + 500))
    stream.insert(100, b'{"request_id": "broken"')  # the agent path must parse, so it rejects this
    kafka_infra.produce(bootstrap, topic_name, stream, partition=0)

    result = ingest.compare(bootstrap, topic_name, len(stream), repeats=1)

    assert (len(result.bare), len(result.agent)) == (1, 1)
    assert result.rejected == 1
    assert result.accepted == 2 * ingest.WINDOW_SIZE + 500
    assert result.fragments_sent >= 1
    marks = [int(len(stream) * point) for point in ingest.PROGRESS_POINTS]
    assert [seen for seen, _rss, _hwm in result.memory] == marks
    assert all(run.msg_per_s > 0 and run.cpu_us_per_msg > 0 for run in (*result.bare, *result.agent))
    assert result.ratio == result.agent[0].msg_per_s / result.bare[0].msg_per_s
    # The agent path committed what it read, as the runner does.
    committed = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=result.agent_groups[0])
    try:
        assert committed.committed(kafka.TopicPartition(topic_name, 0)) == len(stream)
    finally:
        committed.close()

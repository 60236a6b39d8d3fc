"""kill -9 a consumer mid-stream, start it again: every record processed at least once."""

from __future__ import annotations

import collections
import os
import pathlib
import signal
import subprocess
import sys
import uuid

import pytest

from demo import broker
from tests.infra import kafka as kafka_infra
from tests.support.kafka import helpers

pytestmark = pytest.mark.integration

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
TOTAL = 300
HANG_AFTER = 120
CONSUMER = "tests.integration.kafka.crash_consumer"  # run as a module from the repository root


def start_consumer(
    bootstrap: str, topic: str, group: str, out: pathlib.Path, *extra: str
) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", CONSUMER, bootstrap, topic, group, str(out), *extra],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def ids_in(out: pathlib.Path) -> list[str]:
    return out.read_text().split() if out.exists() else []


def test_sigkill_mid_stream_loses_nothing(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, tmp_path: pathlib.Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    kafka_broker.create_topics([topic_name], partitions=3)
    kafka_infra.produce(bootstrap, topic_name, [helpers.prediction_json(i) for i in range(TOTAL)])
    group = f"crash-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "processed.txt"

    first = start_consumer(bootstrap, topic_name, group, out, "--hang-after", str(HANG_AFTER))
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "hanging"  # blocks until it reached the point
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    before_restart = ids_in(out)
    assert HANG_AFTER <= len(before_restart) < TOTAL

    second = start_consumer(bootstrap, topic_name, group, out)
    try:
        expected = {f"req-{i}" for i in range(TOTAL)}
        kafka_infra.wait_until(
            lambda: set(ids_in(out)) >= expected, timeout_s=60, what="every record processed"
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0
    finally:
        if second.poll() is None:
            second.kill()

    processed = ids_in(out)
    counts = collections.Counter(processed)
    assert set(counts) == expected, "a record was lost or an unknown one appeared"
    redelivered = {name for name, count in counts.items() if count > 1}
    # Exactly the records of the batches written but never committed come back; nothing else.
    assert redelivered, "the uncommitted batch should have been processed again"
    assert redelivered <= set(before_restart)
    assert len(processed) - TOTAL == len(redelivered) <= 25  # one poll of max_poll_records

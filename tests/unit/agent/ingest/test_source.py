"""KafkaSource without a broker: security settings, secrets kept out of logs, reconnect backoff.

Against a real Tansu broker: tests/integration/kafka/test_source.py.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import pytest

from agent import settings
from agent.ingest import source
from tests.support.kafka import helpers


def test_sasl_needs_mechanism_and_readable_password_file(tmp_path: pathlib.Path) -> None:
    def sasl(**extra: Any) -> settings.KafkaSettings:
        return helpers.kafka_settings("127.0.0.1:1", "p", security_protocol="SASL_SSL", **extra)

    with pytest.raises(source.SourceConfigError, match=r"kafka\.sasl_mechanism"):
        source.KafkaSource(sasl())
    missing = tmp_path / "absent"
    with pytest.raises(source.SourceConfigError, match=r"kafka\.sasl_password_file"):
        source.KafkaSource(
            sasl(sasl_mechanism="SCRAM-SHA-512", sasl_username="agent", sasl_password_file=missing)
        )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(source.SourceConfigError, match="is empty"):
        source.KafkaSource(sasl(sasl_mechanism="PLAIN", sasl_username="agent", sasl_password_file=empty))
    with pytest.raises(source.SourceConfigError, match=r"kafka\.ssl_cafile"):
        source.connection_config(
            helpers.kafka_settings("127.0.0.1:1", "p", security_protocol="SSL", ssl_cafile=missing)
        )


def test_password_reaches_the_client_but_never_the_log(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-do-not-log"
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    config = helpers.kafka_settings(
        "127.0.0.1:1",
        "p",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="agent",
        sasl_password_file=password_file,
    )
    assert source.connection_config(config)["sasl_plain_password"] == secret
    caplog.set_level(logging.DEBUG)
    kafka_source = source.KafkaSource(config, bootstrap_timeout_s=0.5)
    try:
        assert kafka_source.poll_batch() == []
        assert secret not in kafka_source.status()
        assert secret not in repr(kafka_source)
    finally:
        kafka_source.close()
    assert caplog.records, "expected connection warnings to be logged"
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_backoff_doubles_and_caps_on_an_injected_clock() -> None:
    now = [100.0]
    backoff = source.Backoff(0.5, 3.0, clock=lambda: now[0])
    assert backoff.ready()
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not backoff.ready()
    now[0] += 3.0
    assert backoff.ready()
    backoff.succeeded()
    assert backoff.failed() == 0.5

"""KafkaSource without a broker: security settings, secrets kept out of logs, reconnect backoff.

Against a real Tansu broker: tests/integration/kafka/test_source.py.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import confluent_kafka
import pytest

from agent import settings
from agent.ingest import connection, consumers, rdkafka_source, source
from tests.support.kafka import helpers


def test_sasl_needs_mechanism_and_readable_password_file(tmp_path: pathlib.Path) -> None:
    def sasl(**extra: Any) -> settings.KafkaSettings:
        return helpers.kafka_settings("127.0.0.1:1", "p", security_protocol="SASL_SSL", **extra)

    with pytest.raises(connection.SourceConfigError, match=r"kafka\.sasl_mechanism"):
        source.KafkaSource(sasl())
    missing = tmp_path / "absent"
    with pytest.raises(connection.SourceConfigError, match=r"kafka\.sasl_password_file"):
        source.KafkaSource(
            sasl(sasl_mechanism="SCRAM-SHA-512", sasl_username="agent", sasl_password_file=missing)
        )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(connection.SourceConfigError, match="is empty"):
        source.KafkaSource(sasl(sasl_mechanism="PLAIN", sasl_username="agent", sasl_password_file=empty))
    with pytest.raises(connection.SourceConfigError, match=r"kafka\.ssl_cafile"):
        connection.connection_config(
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
    assert connection.connection_config(config)["sasl_plain_password"] == secret
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


def test_every_connection_setting_reaches_librdkafka_under_its_own_name(tmp_path: pathlib.Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    paths = {}
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        paths[name] = tmp_path / name
        paths[name].write_text("pem")
    config = helpers.kafka_settings(
        "127.0.0.1:1, 127.0.0.2:2",
        "p",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="agent",
        sasl_password_file=password_file,
        **paths,
    )
    properties = rdkafka_source.client_properties(connection.connection_config(config))
    assert properties == {
        "bootstrap.servers": "127.0.0.1:1,127.0.0.2:2",
        "client.id": "drift-agent",
        "security.protocol": "SASL_SSL",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "agent",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(paths["ssl_cafile"]),
        "ssl.certificate.location": str(paths["ssl_certfile"]),
        "ssl.key.location": str(paths["ssl_keyfile"]),
    }
    # librdkafka knows every name (an unknown property would raise here; the PEM files it would
    # also read, and these are not certificates).
    plain = {name: value for name, value in properties.items() if not name.startswith("ssl.")}
    confluent_kafka.Consumer({**plain, "group.id": "g"}).close()


def test_the_client_setting_picks_the_source() -> None:
    for client, kind in (("kafka-python", source.KafkaSource), ("librdkafka", rdkafka_source.RdKafkaSource)):
        opened = consumers.open_source(helpers.kafka_settings("127.0.0.1:1", "p", client=client))
        assert type(opened) is kind
        assert opened.status().startswith("kafka consumer not created")
        opened.close()

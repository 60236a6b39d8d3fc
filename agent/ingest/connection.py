"""Connection settings shared by every Kafka client of the agent: servers, TLS and SASL.

Checked when a client is built, so that a bad TLS path or a missing password file is a
configuration error naming the field, not an outage.
"""

from __future__ import annotations

from typing import Any

from agent import settings


class SourceConfigError(ValueError):
    """Kafka settings that cannot work (not an outage): the message names the field and the fix."""


def connection_config(kafka_settings: settings.KafkaSettings) -> dict[str, Any]:
    """Client keyword arguments shared by consumer and producer: servers, TLS and SASL.

    The SASL password is read from its file here and lives only in the returned dict, which
    must never be logged.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka_settings.bootstrap_servers.split(",") if s.strip()],
        "client_id": kafka_settings.client_id,
        "security_protocol": kafka_settings.security_protocol,
        "reconnect_backoff_ms": int(kafka_settings.reconnect_backoff_initial_s * 1000),
        "reconnect_backoff_max_ms": int(kafka_settings.reconnect_backoff_max_s * 1000),
    }
    if not config["bootstrap_servers"]:
        raise SourceConfigError("kafka.bootstrap_servers is empty; set it to host:port[,host:port...]")
    protocol = kafka_settings.security_protocol
    if protocol.startswith("SASL"):
        if kafka_settings.sasl_mechanism is None:
            raise SourceConfigError(
                f"kafka.sasl_mechanism must be set when kafka.security_protocol is {protocol} "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if kafka_settings.sasl_username is None or kafka_settings.sasl_password_file is None:
            raise SourceConfigError(
                f"kafka.sasl_username and kafka.sasl_password_file must both be set when "
                f"kafka.security_protocol is {protocol}"
            )
        config["sasl_mechanism"] = kafka_settings.sasl_mechanism
        config["sasl_plain_username"] = kafka_settings.sasl_username
        config["sasl_plain_password"] = _read_password(kafka_settings)
    if protocol.endswith("SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(kafka_settings, name)
            if path is None:
                continue
            if not path.is_file():
                raise SourceConfigError(
                    f"kafka.{name}: file {path} does not exist; mount it or unset the field"
                )
            config[name] = str(path)
    return config


def _read_password(kafka_settings: settings.KafkaSettings) -> str:
    path = kafka_settings.sasl_password_file
    assert path is not None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceConfigError(
            f"kafka.sasl_password_file: cannot read {path} ({exc.strerror}); mount the Secret there"
        ) from None
    # Secrets mounted from files often end with a newline the broker would not expect.
    password = text.rstrip("\r\n")
    if not password:
        raise SourceConfigError(f"kafka.sasl_password_file: {path} is empty")
    return password

"""A copy of every audit line on a Kafka topic (``audit.kafka_topic``); the JSONL file is the record."""

from __future__ import annotations

from agent import settings as settings_mod
from agent.ingest import source


class AuditProducer:
    """Publishes audit lines to ``audit.kafka_topic`` asynchronously."""

    def __init__(self, kafka_settings: settings_mod.KafkaSettings, topic: str) -> None:
        import kafka  # noqa: PLC0415 - only when the audit topic is configured

        self._topic = topic
        self._producer = kafka.KafkaProducer(**source.connection_config(kafka_settings), acks="all")

    def send(self, line: bytes) -> None:
        self._producer.send(self._topic, line)

    def close(self) -> None:
        self._producer.close(timeout=5)


def audit_producer(
    kafka_settings: settings_mod.KafkaSettings, config: settings_mod.AuditSettings
) -> AuditProducer | None:
    return AuditProducer(kafka_settings, config.kafka_topic) if config.kafka_topic else None

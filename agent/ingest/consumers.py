"""The consumer-group source of the client ``kafka.client`` names."""

from __future__ import annotations

from typing import Any

from agent import settings
from agent.ingest import rdkafka_source, source


def open_source(kafka_settings: settings.KafkaSettings, **options: Any) -> source.Source:
    """A ``source.Source`` on kafka-python or librdkafka; ``options`` as ``source.GroupSource`` takes."""
    if kafka_settings.client == "librdkafka":
        return rdkafka_source.RdKafkaSource(kafka_settings, **options)
    return source.KafkaSource(kafka_settings, **options)

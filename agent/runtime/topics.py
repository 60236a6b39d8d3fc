"""The internal topics the agents share, created at start when missing, and the checks that
keep the scale-out correct (co-partitioned inputs, fragments and state partitioned alike).

| topic | key | partitions | cleanup | what |
| --- | --- | --- | --- | --- |
| ``<prefix>.fragments`` | model | ``streams.partitions`` | delete | fragments from every ingest worker |
| ``<prefix>.state`` | model | ``streams.partitions`` | compact | each model's evaluator state (versioned) |
| ``<prefix>.actions`` | model | 1 | delete | decided actions, for the Lease holder to execute |
| ``<prefix>.journal`` | idempotency key | 1 | compact | what the executor began and finished |
| ``<prefix>.windows`` | model | 1 | delete | closed windows while a model serves two versions (canary) |
| ``<prefix>.canary`` | model | 1 | compact | the running canary's state, for the Lease holder |
| ``<prefix>.training`` | model | 1 | delete | label-joined rows, for a retrain on the Lease holder |

Every one is created with ``max.message.bytes`` = ``MAX_MESSAGE_BYTES`` (16 MiB).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence

from kafka import admin as kafka_admin
from kafka import errors as kafka_errors

from agent import settings as settings_mod
from agent.ingest import connection, source

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_MS = 10_000
# The largest message the agents write to an internal topic (their producer's max_request_size
# too). A model's state carries its open windows: 1000 records of a 768-dim embedding are ~3 MB,
# over Kafka's default limit of 1 MB, so the topics are created with this limit instead.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class TopologyError(RuntimeError):
    """Topics that cannot carry the scale-out correctly; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class InternalTopics:
    fragments: str
    state: str
    actions: str
    journal: str
    windows: str
    canary: str
    training: str

    @classmethod
    def of(cls, config: settings_mod.StreamsSettings) -> InternalTopics:
        prefix = config.topic_prefix
        return cls(
            fragments=f"{prefix}.fragments",
            state=f"{prefix}.state",
            actions=f"{prefix}.actions",
            journal=f"{prefix}.journal",
            windows=f"{prefix}.windows",
            canary=f"{prefix}.canary",
            training=f"{prefix}.training",
        )


def _wanted(topics: InternalTopics, config: settings_mod.StreamsSettings) -> list[kafka_admin.NewTopic]:
    def topic(name: str, partitions: int, configs: Mapping[str, str]) -> kafka_admin.NewTopic:
        return kafka_admin.NewTopic(
            name,
            partitions,
            config.replication_factor,
            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES), **configs},
        )

    keep = {"cleanup.policy": "delete", "retention.ms": str(config.fragments_retention_ms)}
    return [
        topic(topics.fragments, config.partitions, keep),
        topic(topics.state, config.partitions, {"cleanup.policy": "compact"}),
        topic(
            topics.actions, 1, {"cleanup.policy": "delete", "retention.ms": str(config.actions_retention_ms)}
        ),
        topic(topics.journal, 1, {"cleanup.policy": "compact"}),
        topic(topics.windows, 1, keep),
        topic(topics.canary, 1, {"cleanup.policy": "compact"}),
        topic(topics.training, 1, keep),
    ]


def partition_counts(admin: kafka_admin.KafkaAdminClient, names: Sequence[str]) -> dict[str, int]:
    """Partitions per existing topic (topics that do not exist are left out)."""
    counts: dict[str, int] = {}
    for described in admin.describe_topics(list(names)):
        if described.get("error_code", 0) == 0 and described.get("partitions"):
            counts[described["name"]] = len(described["partitions"])
    return counts


def ensure(
    kafka_settings: settings_mod.KafkaSettings, config: settings_mod.StreamsSettings
) -> tuple[InternalTopics, dict[str, int]]:
    """Create missing internal topics (when allowed), then check the topology; partition counts back."""
    topics = InternalTopics.of(config)
    admin_connection = {
        **connection.connection_config(kafka_settings),
        "client_id": f"{kafka_settings.client_id}-admin",
    }
    admin = kafka_admin.KafkaAdminClient(**admin_connection, request_timeout_ms=ADMIN_TIMEOUT_MS)
    try:
        wanted = _wanted(topics, config)
        existing = partition_counts(admin, [t.name for t in wanted])
        missing = [t for t in wanted if t.name not in existing]
        if missing and not config.create_topics:
            raise TopologyError(
                f"internal topics missing: {', '.join(t.name for t in missing)}; create them or set "
                "streams.create_topics: true"
            )
        if missing:
            with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):  # another agent was first
                admin.create_topics(missing, timeout_ms=ADMIN_TIMEOUT_MS)
            log.info("created internal topics %s", ", ".join(t.name for t in missing))
        counts = partition_counts(admin, [t.name for t in wanted] + source.input_topics(kafka_settings))
    finally:
        admin.close()
    check(kafka_settings, topics, counts)
    return topics, counts


def check(
    kafka_settings: settings_mod.KafkaSettings, topics: InternalTopics, counts: Mapping[str, int]
) -> None:
    """Refuse a topology that would mis-route state or split a label from its prediction."""
    if counts.get(topics.fragments) != counts.get(topics.state):
        raise TopologyError(
            f"{topics.fragments} has {counts.get(topics.fragments)} partitions and {topics.state} "
            f"{counts.get(topics.state)}: a model's state must live in the partition of its fragments; "
            "give both the same partition count"
        )
    labels_topic = kafka_settings.labels_topic
    if labels_topic is None:
        return
    predictions, labels = counts.get(kafka_settings.predictions_topic), counts.get(labels_topic)
    if predictions is not None and labels is not None and predictions != labels:
        raise TopologyError(
            f"{kafka_settings.predictions_topic} has {predictions} partitions and {labels_topic} {labels}: "
            "labels are joined to predictions in the partition of their request_id, so both topics need "
            "the same partition count (and producers must key both by request_id)"
        )

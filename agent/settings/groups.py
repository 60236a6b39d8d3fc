"""Settings groups: one class per group of the settings tree, all at the bottom layer.

Every group forbids unknown keys (a typo must not pass silently) and describes each field;
``config/agent.yaml`` is generated from these descriptions.
"""

from __future__ import annotations

import pathlib
from typing import Literal

import pydantic

# Where the policy file is looked for when none is configured.
DEFAULT_POLICY_PATH = pathlib.Path("config/policy.yaml")


class Group(pydantic.BaseModel):
    """Base of every settings group: unknown keys are errors (a typo must not pass silently)."""

    model_config = pydantic.ConfigDict(extra="forbid")


class KafkaSettings(Group):
    bootstrap_servers: str = pydantic.Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list of the Kafka brokers.",
    )
    predictions_topic: str = pydantic.Field(
        "predictions", description="Topic the serving pods write prediction-log records to."
    )
    labels_topic: str | None = pydantic.Field(
        None, description="Topic carrying ground-truth label records; null disables the label join."
    )
    dead_letter_topic: str = pydantic.Field(
        "predictions.dlq", description="Topic that receives records failing validation, with the reason."
    )
    dead_letter_max_wait_s: float = pydantic.Field(
        300.0,
        gt=0,
        description="Longest a rejected record waits for the dead-letter topic (missing, not writable, "
        "broker away) while its offset stays uncommitted; then it is dropped and counted "
        "(drift_agent_dlq_dropped_total, alert DriftAgentDeadLettersLost) and the agent commits and "
        "goes on.",
    )
    group_id: str = pydantic.Field(
        "drift-agent", description="Consumer group; sidecars sharing it split the partitions."
    )
    client: Literal["kafka-python", "librdkafka"] = pydantic.Field(
        "librdkafka",
        description="The client that reads the agent's topics and publishes its window fragments: "
        "librdkafka (confluent-kafka, C), or kafka-python (pure Python), which costs about 20 us of CPU a "
        "record to read where librdkafka costs 3 at 200 features (python -m bench.ingest_wide). The "
        "agent's other producers (state, actions, dead letters, audit) are kafka-python either way.",
    )
    client_id: str = pydantic.Field("drift-agent", description="Client id reported to the brokers.")
    auto_offset_reset: Literal["earliest", "latest"] = pydantic.Field(
        "earliest", description="Where a new consumer group starts reading."
    )
    max_poll_records: int = pydantic.Field(
        2000, ge=1, le=100_000, description="Most records one poll returns (one batch)."
    )
    poll_timeout_ms: int = pydantic.Field(
        500, ge=1, le=60_000, description="How long one poll waits for records."
    )
    max_poll_interval_ms: int = pydantic.Field(
        10_000,
        ge=1000,
        description="Rebalance timeout; smaller makes group joins faster (a join waits part of it).",
    )
    session_timeout_ms: int = pydantic.Field(
        10_000, ge=1000, description="Consumer session timeout before the group evicts this member."
    )
    max_message_bytes: int = pydantic.Field(
        1_048_576,
        ge=256,
        description="Records larger than this (KServe events included) go to the dead-letter topic as "
        "'oversize'.",
    )
    max_future_skew_s: float = pydantic.Field(
        3600.0,
        gt=0,
        description="Records and labels stamped more than this ahead of the agent's clock go to the "
        "dead-letter topic as 'invalid_value' (a timestamp years ahead would hold event-time windows "
        "open); replay, which has no wall clock, does not check.",
    )
    reconnect_backoff_initial_s: float = pydantic.Field(
        0.5, gt=0, description="First wait before reconnecting to a broker that is down."
    )
    reconnect_backoff_max_s: float = pydantic.Field(
        30.0, gt=0, description="Longest wait between reconnect attempts (exponential backoff, capped)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = pydantic.Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = pydantic.Field(
        None, description="SASL mechanism when security_protocol is SASL_*."
    )
    sasl_username: str | None = pydantic.Field(None, description="SASL user name.")
    sasl_password_file: pathlib.Path | None = pydantic.Field(
        None,
        description="File holding the SASL password (mount a Secret); never put the password in config.",
    )
    ssl_cafile: pathlib.Path | None = pydantic.Field(None, description="CA bundle for SSL.")
    ssl_certfile: pathlib.Path | None = pydantic.Field(None, description="Client certificate for SSL.")
    ssl_keyfile: pathlib.Path | None = pydantic.Field(None, description="Client key for SSL.")


class FieldMappingSettings(Group):
    """Where each contract field lives in the producer's JSON (dotted paths allowed)."""

    request_id: str = pydantic.Field("request_id", description="Path of the request id.")
    timestamp: str = pydantic.Field("timestamp", description="Path of the event time (RFC 3339 or epoch s).")
    model_name: str = pydantic.Field("model_name", description="Path of the model name.")
    model_version: str = pydantic.Field("model_version", description="Path of the model version.")
    features: str = pydantic.Field("features", description="Path of the feature object.")
    prediction: str = pydantic.Field("prediction", description="Path of the prediction.")
    probabilities: str = pydantic.Field("probabilities", description="Path of class probabilities.")
    confidence: str = pydantic.Field("confidence", description="Path of the prediction confidence.")
    latency_ms: str = pydantic.Field("latency_ms", description="Path of end-to-end latency in ms.")
    gpu_latency_ms: str = pydantic.Field("gpu_latency_ms", description="Path of GPU-side latency in ms.")
    status: str = pydantic.Field("status", description="Path of the request status (ok|error).")
    segment: str = pydantic.Field("segment", description="Path of the segment object.")
    label: str = pydantic.Field("label", description="Path of the label in label records.")


class KServeSettings(Group):
    """Settings group ``kserve``."""

    enabled: bool = pydantic.Field(
        False,
        description="Read the predictions topic as KServe inference-logger CloudEvents (request and "
        "response events joined by their id) instead of prediction-log records.",
    )
    feature_names: list[str] | None = pydantic.Field(
        None,
        description="Names of the columns of a 2-D input (V1 instances, or the one 2-D V2 input); "
        "null = f0, f1, ... (V1) and <input>_0, <input>_1, ... (V2). 1-D V2 inputs use their own names.",
    )
    model_name: str | None = pydantic.Field(
        None, description="Model name on the records; null = the event's inferenceservicename extension."
    )
    model_version: str | None = pydantic.Field(
        None,
        description="Version when the response does not carry one (V1 never does); null = the event's "
        "endpoint extension (default/canary), else 'unknown'.",
    )
    prediction_output: str | None = pydantic.Field(
        None, description="Name of the V2 output tensor holding the prediction; null = the first output."
    )
    ttl_s: float = pydantic.Field(
        60.0, gt=0, description="How long a request waits for its response (and back) before dead-lettering."
    )
    max_pending: int = pydantic.Field(
        100_000, ge=1, description="Most unjoined events held; beyond it the oldest are dead-lettered."
    )

    @pydantic.field_validator("feature_names")
    @classmethod
    def _distinct_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (len(set(names)) != len(names) or not all(names)):
            raise ValueError("feature_names must be distinct, non-empty names (one per column)")
        return names


class WindowSettings(Group):
    kind: Literal["count", "time"] = pydantic.Field(
        "count", description="count: a window holds `size` records; time: `duration_s` seconds of event time."
    )
    size: int = pydantic.Field(1000, ge=10, le=1_000_000, description="Records per window (kind=count).")
    duration_s: float = pydantic.Field(
        300.0, gt=0, description="Window length in seconds of event time (kind=time)."
    )
    slide: int | None = pydantic.Field(
        None,
        ge=1,
        description="Emit every `slide` records (count) for a sliding window; null = tumbling.",
    )
    slide_s: float | None = pydantic.Field(
        None, gt=0, description="Emit every `slide_s` seconds (time) for a sliding window; null = tumbling."
    )
    segment_by: list[str] = pydantic.Field(
        default_factory=list,
        description="Segment attributes to keep separate windows for (besides model_version).",
    )
    max_open_windows: int = pydantic.Field(
        256, ge=1, description="Cap on (model_version, segment) windows kept open; least recent is evicted."
    )


class ReferenceSettings(Group):
    source: Literal["file", "mlflow", "first_n"] = pydantic.Field(
        "first_n",
        description="Where reference data comes from: a file, an MLflow run artifact, "
        "or the first N records seen.",
    )
    path: pathlib.Path | None = pydantic.Field(
        None, description="Reference file (JSONL, CSV or Parquet of records) when source=file."
    )
    mlflow_run_id: str | None = pydantic.Field(None, description="MLflow run holding the reference artifact.")
    mlflow_artifact_path: str = pydantic.Field(
        "reference.parquet", description="Artifact path of the reference inside the run."
    )
    first_n: int = pydantic.Field(
        5000, ge=10, description="How many first records form the reference when source=first_n."
    )
    max_rows: int = pydantic.Field(
        100_000, ge=10, description="Reference rows kept at most (a seeded uniform sample beyond that)."
    )

    @pydantic.model_validator(mode="after")
    def _source_has_its_location(self) -> ReferenceSettings:
        if self.source == "file" and self.path is None:
            raise ValueError(
                "reference.source is file but reference.path is not set: give the path of the reference "
                "records (JSONL, CSV or Parquet), or use source first_n"
            )
        if self.source == "mlflow" and self.mlflow_run_id is None:
            raise ValueError(
                "reference.source is mlflow but reference.mlflow_run_id is not set: give the run that "
                "holds the reference artifact, or use source first_n"
            )
        return self


class LabelJoinSettings(Group):
    ttl_s: float = pydantic.Field(
        3600.0, gt=0, description="How long a prediction waits for its label before it counts as unlabelled."
    )
    max_pending: int = pydantic.Field(
        200_000, ge=1, description="Most predictions waiting for labels; the oldest are expired first."
    )


class PolicySettings(Group):
    """Settings group ``policy``."""

    path: pathlib.Path = pydantic.Field(
        DEFAULT_POLICY_PATH,
        description="Severity policy YAML (rules, severity bands, action plans). When the default path is "
        "absent the built-in policy is used; it is identical to the shipped config/policy.yaml.",
    )


class OverrideSettings(Group):
    """Settings group ``overrides``."""

    path: pathlib.Path = pydantic.Field(
        pathlib.Path("config/overrides.yaml"),
        description="On-call override file (YAML), re-read while the agent runs; a missing file means none.",
    )
    reload_interval_s: float = pydantic.Field(
        1.0, gt=0, le=60, description="How often the override file is re-read (content hash compared)."
    )


class AuditSettings(Group):
    """Settings group ``audit``."""

    path: pathlib.Path = pydantic.Field(
        pathlib.Path(".state/audit.jsonl"),
        description="Append-only JSONL audit log (decisions, actions, override changes).",
    )
    kafka_topic: str | None = pydantic.Field(
        None, description="Also publish every audit line to this Kafka topic; null = file only."
    )
    fsync_every_entry: bool = pydantic.Field(
        False,
        description="fsync after every line instead of on flush() (the loop flushes before each offset "
        "commit); costs one disk sync per decision.",
    )


class HttpSettings(Group):
    # All interfaces by default: the kubelet's probes and Prometheus reach the pod from outside.
    host: str = pydantic.Field(
        "0.0.0.0",  # noqa: S104
        description="Address the /metrics, /healthz, /readyz server binds.",
    )
    port: int = pydantic.Field(9108, ge=0, le=65535, description="Port of that server (0 = any free port).")


class LoggingSettings(Group):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = pydantic.Field("INFO", description="Log level.")
    json_format: bool = pydantic.Field(True, description="One JSON object per log line (for log shippers).")
    libraries_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = pydantic.Field(
        "WARNING",
        description="Level of the libraries' loggers (kafka, mlflow, urllib3, kubernetes, ...): their "
        "reconnect chatter stays out below it.",
    )
    repeat_interval_s: float = pydantic.Field(
        60.0,
        ge=0,
        description="A library's log line repeated within this many seconds is held back and counted "
        "(a broker that is down logs once a minute, not every retry); 0 = every line.",
    )


class RuntimeSettings(Group):
    liveness_stall_s: float = pydantic.Field(
        180.0,
        gt=0,
        description="/healthz fails when the main loop or the leader-election ticker has not turned for this "
        "long (stuck in a call that never returns): Kubernetes then restarts the container.",
    )
    drain_timeout_s: float = pydantic.Field(
        25.0,
        gt=0,
        description="On SIGTERM: finish the batch, commit, flush the audit log within this bound, then exit. "
        "Keep it below the pod's terminationGracePeriodSeconds.",
    )
    state_dir: pathlib.Path = pydantic.Field(
        pathlib.Path(".state"),
        description="Directory for checkpoints, idempotency records and the audit log.",
    )
    model_name: str = pydantic.Field("model", description="Name of the model this agent watches.")


class StreamsSettings(Group):
    """Settings group ``streams``: how the agents of one consumer group share work through Kafka.

    Every agent ingests a share of the input partitions and publishes window fragments keyed by
    model; the owner of a fragments partition evaluates the models hashed to it; the Lease holder
    executes the decided actions. The internal topics are created at start when missing.
    """

    topic_prefix: str = pydantic.Field(
        "drift-agent",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Prefix of the internal topics: <prefix>.fragments, .state, .actions, .journal, "
        ".windows, .canary, .training. Agents that share work must share it; another deployment "
        "needs another.",
    )
    partitions: int = pydantic.Field(
        12,
        ge=1,
        le=10_000,
        description="Partitions of the fragments and state topics: the most agents that can evaluate "
        "at once (one model is evaluated by one agent at a time). Fixed once the topics exist.",
    )
    replication_factor: int = pydantic.Field(
        1,
        ge=1,
        le=16,
        description="Replication of internal topics the agent creates (3 in production).",
    )
    fragments_retention_ms: int = pydantic.Field(
        86_400_000,
        ge=60_000,
        description="Retention of <prefix>.fragments, .windows and .training (default one day).",
    )
    actions_retention_ms: int = pydantic.Field(
        604_800_000, ge=60_000, description="Retention of <prefix>.actions (default seven days)."
    )
    create_topics: bool = pydantic.Field(
        True,
        description="Create missing internal topics at start (CreateTopics ACL); false = they must exist.",
    )
    commit_interval_s: float = pydantic.Field(
        1.0,
        gt=0,
        le=60,
        description="How often each stage makes its work durable (produce, flush, commit its input).",
    )
    checkpoint_input_mib: float = pydantic.Field(
        32.0,
        gt=0,
        le=1024,
        description="Input the ingest stage holds (MiB of raw records) before it makes it durable without "
        "waiting for commit_interval_s: bounds what one checkpoint holds in memory at high rates (about "
        "7 000 records of 200 features).",
    )
    state_interval_s: float = pydantic.Field(
        5.0,
        gt=0,
        le=300,
        description="How often the evaluator writes the state of each model it changed to <prefix>.state.",
    )
    max_fragment_records: int = pydantic.Field(
        2000, ge=1, le=100_000, description="Most records in one fragment message (a batch per model)."
    )
    fragment_format: Literal[1, 2, 3] = pydantic.Field(
        3,
        description="How this agent writes fragments: 3 sends each set of feature names once per message and "
        "every record's values in that order, a record of floats only as packed bytes (no Python float per "
        "value for the evaluator: at 200 features about 9 us a record less); 2 is the same without packing, "
        "the newest format agents built before format 3 read; 1 sends a dict per record, the only format "
        "agents built before format 2 read (such agents log 'skipping unreadable fragment' for the others). "
        "Set 2 (or 1) while a rolling upgrade from such agents is under way, then remove it. All three "
        "formats are read.",
    )
    allowed_lateness_s: float = pydantic.Field(
        30.0,
        ge=0,
        description="Time windows close once every input partition's event time is this far past their end; "
        "records later than that are counted as late.",
    )
    idle_input_s: float = pydantic.Field(
        30.0,
        gt=0,
        description="An input partition whose event time has not advanced for this long (a quiet producer) "
        "stops holding time windows open; its later records count as late.",
    )


class ExecutorSettings(Group):
    """Settings group ``executor``: how failed actions are tried again.

    A failure the handler marks retryable (API server or MLflow unreachable, HTTP 5xx or 429) is
    tried again after ``retry_initial_backoff_s``, doubling up to ``retry_max_backoff_s``; the
    ``retry_max_attempts``-th failure is final and pages a human.
    """

    retry_max_attempts: int = pydantic.Field(
        5, ge=1, le=100, description="Tries of one action before a retryable failure is final (1 = no retry)."
    )
    retry_initial_backoff_s: float = pydantic.Field(
        10.0, gt=0, le=3600, description="Wait before the second try; doubles after each failure."
    )
    retry_max_backoff_s: float = pydantic.Field(
        300.0, gt=0, le=86_400, description="Longest wait between two tries."
    )


class LeaderElectionSettings(Group):
    """Settings group ``leader_election``."""

    enabled: bool = pydantic.Field(
        False,
        description="Elect one acting sidecar through a Kubernetes Lease; false = always act (local mode).",
    )
    namespace: str = pydantic.Field("default", description="Namespace of the Lease (the pod's namespace).")
    lease_name: str = pydantic.Field(
        "drift-agent", description="Name of the Lease; the chart's Role grants access to this name only."
    )
    identity: str | None = pydantic.Field(
        None, description="This candidate's identity; null = the pod name (HOSTNAME) plus a random suffix."
    )
    lease_duration_s: float = pydantic.Field(
        15.0, gt=0, description="How long others wait after the last observed renew before taking over."
    )
    renew_deadline_s: float = pydantic.Field(
        10.0,
        gt=0,
        description="The leader stops acting after this long without a renew; must be < lease_duration_s.",
    )
    retry_period_s: float = pydantic.Field(
        2.0, gt=0, description="Interval between acquire/renew attempts; must be < renew_deadline_s."
    )

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> LeaderElectionSettings:
        check_lease_durations(self.lease_duration_s, self.renew_deadline_s, self.retry_period_s)
        return self


def check_lease_durations(lease_duration_s: float, renew_deadline_s: float, retry_period_s: float) -> None:
    if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
        raise ValueError(
            "leader election needs 0 < retry_period_s < renew_deadline_s < lease_duration_s, got "
            f"retry_period_s={retry_period_s}, renew_deadline_s={renew_deadline_s}, "
            f"lease_duration_s={lease_duration_s}: a leader must give up before others may take over"
        )


class GpuSettings(Group):
    """Settings group ``gpu``."""

    nvml_enabled: bool = pydantic.Field(
        True, description="Read GPU utilisation, memory, temperature and power through NVML when available."
    )
    device_index: int = pydantic.Field(0, ge=0, description="NVML index of the GPU the model server uses.")
    sample_interval_s: float = pydantic.Field(
        10.0, gt=0, description="Seconds between NVML readings (each reading takes well under a millisecond)."
    )


# Shares of memory.budget_mib, one per bounded buffer: the budget is what the agent may hold in
# data beyond its fixed baseline (interpreter, numpy, torch, Kafka clients: ~400 MB measured).
# The label join holds the most (a prediction waits up to labels.ttl_s for its label); windows and
# the reference are bounded by their record counts and checked against their share at start.
MEMORY_SHARES: dict[str, float] = {
    "label_join": 0.35,
    "windows_reference": 0.35,
    "retrain": 0.15,
    "dead_letters": 0.05,
    "kserve": 0.05,
    "audit": 0.05,
}
# Without a container limit: 1 GiB (the chart's default limit) minus the ~400 MB baseline, minus
# headroom for the detectors' per-window work.
DEFAULT_MEMORY_BUDGET_MIB = 512


class MemorySettings(Group):
    """Settings group ``memory``: one budget from which every buffer's byte bound is derived."""

    budget_mib: int | None = pydantic.Field(
        None,
        ge=16,
        description="MiB the agent may hold in data (label join, windows and reference, retrain rows, "
        "dead-letter retries, KServe pairing, audit copies), beyond its ~400 MB baseline (interpreter, "
        "numpy, torch, Kafka clients). Split by fixed shares: label join 35 %, windows and reference "
        "35 % (checked at start), retrain rows 15 %, dead letters, KServe pairing and audit 5 % each. "
        "When a bound is hit the oldest data goes, counted (drift_agent_buffer_evicted_total). null = "
        "budget_fraction of container_limit_mib when that is known, else 512 (a 1 GiB container).",
    )
    container_limit_mib: int | None = pydantic.Field(
        None,
        ge=64,
        description="The container's memory limit in MiB; the chart sets it from the agent container's "
        "limits.memory (DRIFT_AGENT_MEMORY__CONTAINER_LIMIT_MIB). null = unknown (outside Kubernetes).",
    )
    budget_fraction: float = pydantic.Field(
        0.5,
        gt=0,
        lt=1,
        description="Share of container_limit_mib given to the budget when budget_mib is null; the rest "
        "covers the baseline and the detectors' per-window work (0.5 of 1 GiB = 512 MiB).",
    )

    @property
    def budget_bytes(self) -> int:
        if self.budget_mib is not None:
            return self.budget_mib * 1024 * 1024
        if self.container_limit_mib is not None:
            return int(self.container_limit_mib * self.budget_fraction * 1024 * 1024)
        return DEFAULT_MEMORY_BUDGET_MIB * 1024 * 1024

    def bytes_for(self, buffer: str) -> int:
        """The byte bound of one buffer (a key of ``MEMORY_SHARES``)."""
        share = MEMORY_SHARES.get(buffer)
        if share is None:
            raise ValueError(f"unknown memory buffer {buffer!r}; valid: {sorted(MEMORY_SHARES)}")
        return int(self.budget_bytes * share)

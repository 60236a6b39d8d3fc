"""One typed settings tree for the whole agent.

Precedence: environment (``DRIFT_AGENT_`` prefix, ``__`` between nested names) > YAML file >
defaults. The environment is read here and nowhere else.
"""

from __future__ import annotations

import pathlib
from typing import Any, Literal

import pydantic
import pydantic_settings
import yaml

from actions import registry as registry_mod
from actions import targets as targets_mod
from actions.alerts import config as alerts_config
from actions.canary import config as canary_config
from actions.retrain import config as retrain_config
from agent import audit as audit_mod
from agent import kserve_config
from agent import leader as leader_mod
from agent import nvml as nvml_mod
from agent import overrides as overrides_mod
from agent import policy as policy_mod
from detectors import suite as suite_mod

ENV_PREFIX = "DRIFT_AGENT_"
DEFAULT_CONFIG_PATH = pathlib.Path(__file__).resolve().parent.parent / "config" / "agent.yaml"


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
    group_id: str = pydantic.Field(
        "drift-agent", description="Consumer group; sidecars sharing it split the partitions."
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
        description="Records larger than this go to the dead-letter topic as 'oversize'.",
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


class LabelJoinSettings(Group):
    ttl_s: float = pydantic.Field(
        3600.0, gt=0, description="How long a prediction waits for its label before it counts as unlabelled."
    )
    max_pending: int = pydantic.Field(
        200_000, ge=1, description="Most predictions waiting for labels; the oldest are expired first."
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


class RuntimeSettings(Group):
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


class AgentSettings(pydantic_settings.BaseSettings):
    """The whole configuration. Every field has a default; see config/agent.yaml."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    kafka: KafkaSettings = pydantic.Field(
        default_factory=KafkaSettings, description="Kafka connection and topics."
    )
    mapping: FieldMappingSettings = pydantic.Field(
        default_factory=FieldMappingSettings, description="Field mapping of the prediction-log JSON."
    )
    window: WindowSettings = pydantic.Field(default_factory=WindowSettings, description="Windowing.")
    reference: ReferenceSettings = pydantic.Field(
        default_factory=ReferenceSettings, description="Reference data."
    )
    labels: LabelJoinSettings = pydantic.Field(default_factory=LabelJoinSettings, description="Label join.")
    http: HttpSettings = pydantic.Field(
        default_factory=HttpSettings, description="Metrics and health endpoints."
    )
    logging: LoggingSettings = pydantic.Field(default_factory=LoggingSettings, description="Logging.")
    runtime: RuntimeSettings = pydantic.Field(default_factory=RuntimeSettings, description="Process runtime.")
    # Groups owned by other modules are added below, one line each.
    retrain: retrain_config.RetrainSettings = pydantic.Field(
        default_factory=retrain_config.RetrainSettings, description="Gated retrain (train, gate, register)."
    )
    canary: canary_config.CanaryConfig = pydantic.Field(
        default_factory=canary_config.CanaryConfig, description="Canary redeploys: steps, checks."
    )
    detectors: suite_mod.SuiteConfig = pydantic.Field(
        default_factory=suite_mod.SuiteConfig,
        description="Which detectors run on each window, with their configs.",
    )
    registry: registry_mod.RegistrySettings = pydantic.Field(
        default_factory=registry_mod.RegistrySettings, description="MLflow model registry and rollback."
    )
    target: targets_mod.TargetSettings = pydantic.Field(
        default_factory=targets_mod.TargetSettings, description="Where the model is served (rollback)."
    )
    leader_election: leader_mod.LeaderElectionSettings = pydantic.Field(
        default_factory=leader_mod.LeaderElectionSettings, description="Leader election (one acting sidecar)."
    )
    gpu: nvml_mod.GpuSettings = pydantic.Field(default_factory=nvml_mod.GpuSettings, description="GPU/NVML.")
    policy: policy_mod.PolicySettings = pydantic.Field(
        default_factory=policy_mod.PolicySettings, description="Severity policy."
    )
    overrides: overrides_mod.OverrideSettings = pydantic.Field(
        default_factory=overrides_mod.OverrideSettings, description="On-call override file."
    )
    audit: audit_mod.AuditSettings = pydantic.Field(
        default_factory=audit_mod.AuditSettings, description="Audit log."
    )
    alerting: alerts_config.AlertingConfig = pydantic.Field(
        default_factory=alerts_config.AlertingConfig, description="Alert sinks and routing."
    )
    kserve: kserve_config.KServeSettings = pydantic.Field(
        default_factory=kserve_config.KServeSettings, description="KServe inference-logger CloudEvents input."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[pydantic_settings.BaseSettings],
        init_settings: pydantic_settings.PydanticBaseSettingsSource,
        env_settings: pydantic_settings.PydanticBaseSettingsSource,
        dotenv_settings: pydantic_settings.PydanticBaseSettingsSource,
        file_secret_settings: pydantic_settings.PydanticBaseSettingsSource,
    ) -> tuple[pydantic_settings.PydanticBaseSettingsSource, ...]:
        # init kwargs carry the YAML file's content: env wins over it, defaults lose to both.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """Invalid configuration; the message names each field, the value and what is allowed."""


def format_validation_error(error: pydantic.ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(root)"
        value = item.get("input")
        shown = "<missing>" if item["type"] == "missing" else repr(value)
        if isinstance(value, dict):
            shown = "{...}"
        lines.append(f"  {field}: got {shown}; {item['msg']}")
    lines.append("Fix the named fields (see config/agent.yaml for every setting, its default and meaning).")
    return "\n".join(lines)


def read_yaml(path: pathlib.Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, got {type(data).__name__}"
        )
    return data


def load_settings(path: pathlib.Path | None = None) -> AgentSettings:
    """Load settings: env > the YAML file at ``path`` (if given) > defaults."""
    data = read_yaml(path) if path is not None else {}
    try:
        return AgentSettings(**data)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path) if path else "environment")) from exc


def effective_config(settings: AgentSettings) -> dict[str, Any]:
    """The settings as plain data, secrets never included (only file paths are configured)."""
    return settings.model_dump(mode="json")

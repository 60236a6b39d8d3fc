"""One typed settings tree for the whole agent.

Precedence: environment (``DRIFT_AGENT_`` prefix, ``__`` between nested names) > YAML file >
defaults. The environment is read here and nowhere else.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pydantic
import pydantic_settings
import yaml

from actions import model_registry
from actions import targets as targets_mod
from actions.alerts import config as alerts_config
from actions.canary import config as canary_config
from actions.retrain import config as retrain_config
from agent.settings import groups
from detectors import suite as suite_mod

ENV_PREFIX = "DRIFT_AGENT_"


class AgentSettings(pydantic_settings.BaseSettings):
    """The whole configuration. Every field has a default; see config/agent.yaml."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    kafka: groups.KafkaSettings = pydantic.Field(
        default_factory=groups.KafkaSettings, description="Kafka connection and topics."
    )
    mapping: groups.FieldMappingSettings = pydantic.Field(
        default_factory=groups.FieldMappingSettings, description="Field mapping of the prediction-log JSON."
    )
    window: groups.WindowSettings = pydantic.Field(
        default_factory=groups.WindowSettings, description="Windowing."
    )
    reference: groups.ReferenceSettings = pydantic.Field(
        default_factory=groups.ReferenceSettings, description="Reference data."
    )
    labels: groups.LabelJoinSettings = pydantic.Field(
        default_factory=groups.LabelJoinSettings, description="Label join."
    )
    http: groups.HttpSettings = pydantic.Field(
        default_factory=groups.HttpSettings, description="Metrics and health endpoints."
    )
    logging: groups.LoggingSettings = pydantic.Field(
        default_factory=groups.LoggingSettings, description="Logging."
    )
    runtime: groups.RuntimeSettings = pydantic.Field(
        default_factory=groups.RuntimeSettings, description="Process runtime."
    )
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
    registry: model_registry.RegistrySettings = pydantic.Field(
        default_factory=model_registry.RegistrySettings, description="MLflow model registry and rollback."
    )
    target: targets_mod.TargetSettings = pydantic.Field(
        default_factory=targets_mod.TargetSettings, description="Where the model is served (rollback)."
    )
    leader_election: groups.LeaderElectionSettings = pydantic.Field(
        default_factory=groups.LeaderElectionSettings, description="Leader election (one acting sidecar)."
    )
    gpu: groups.GpuSettings = pydantic.Field(default_factory=groups.GpuSettings, description="GPU/NVML.")
    policy: groups.PolicySettings = pydantic.Field(
        default_factory=groups.PolicySettings, description="Severity policy."
    )
    overrides: groups.OverrideSettings = pydantic.Field(
        default_factory=groups.OverrideSettings, description="On-call override file."
    )
    audit: groups.AuditSettings = pydantic.Field(
        default_factory=groups.AuditSettings, description="Audit log."
    )
    alerting: alerts_config.AlertingConfig = pydantic.Field(
        default_factory=alerts_config.AlertingConfig, description="Alert sinks and routing."
    )
    streams: groups.StreamsSettings = pydantic.Field(
        default_factory=groups.StreamsSettings,
        description="Work sharing between the agents of one consumer group (internal Kafka topics).",
    )
    executor: groups.ExecutorSettings = pydantic.Field(
        default_factory=groups.ExecutorSettings,
        description="Retries of actions that failed for a retryable reason.",
    )
    kserve: groups.KServeSettings = pydantic.Field(
        default_factory=groups.KServeSettings, description="KServe inference-logger CloudEvents input."
    )
    memory: groups.MemorySettings = pydantic.Field(
        default_factory=groups.MemorySettings,
        description="Memory budget: every buffer's byte bound derived from one setting.",
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


def _env_name(loc: tuple[Any, ...]) -> str | None:
    """The environment variable that set the field at ``loc``, when one did."""
    for depth in range(len(loc), 0, -1):
        name = ENV_PREFIX + "__".join(str(part).upper() for part in loc[:depth])
        if name in os.environ:
            return name
    return None


def format_validation_error(error: pydantic.ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(root)"
        value = item.get("input")
        shown = "<missing>" if item["type"] == "missing" else repr(value)
        if isinstance(value, dict):
            shown = "{...}"
        env = _env_name(tuple(item["loc"]))
        origin = f" (from the environment variable {env})" if env else ""
        lines.append(f"  {field}: got {shown}{origin}; {item['msg']}")
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

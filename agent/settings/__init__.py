"""The settings tree (groups at the bottom layer, the tree and its loading on top)."""

from __future__ import annotations

from agent.settings.groups import (
    AuditSettings,
    FieldMappingSettings,
    GpuSettings,
    Group,
    HttpSettings,
    KafkaSettings,
    KServeSettings,
    LabelJoinSettings,
    LeaderElectionSettings,
    LoggingSettings,
    OverrideSettings,
    PolicySettings,
    ReferenceSettings,
    RuntimeSettings,
    WindowSettings,
    check_lease_durations,
)
from agent.settings.tree import (
    ENV_PREFIX,
    AgentSettings,
    ConfigError,
    effective_config,
    format_validation_error,
    load_settings,
    read_yaml,
)

__all__ = [
    "ENV_PREFIX",
    "AgentSettings",
    "AuditSettings",
    "ConfigError",
    "FieldMappingSettings",
    "GpuSettings",
    "Group",
    "HttpSettings",
    "KServeSettings",
    "KafkaSettings",
    "LabelJoinSettings",
    "LeaderElectionSettings",
    "LoggingSettings",
    "OverrideSettings",
    "PolicySettings",
    "ReferenceSettings",
    "RuntimeSettings",
    "WindowSettings",
    "check_lease_durations",
    "effective_config",
    "format_validation_error",
    "load_settings",
    "read_yaml",
]

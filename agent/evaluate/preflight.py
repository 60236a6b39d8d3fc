"""What `run` would refuse, found before it starts: `check-config`, `run` and `replay` share it.

The settings tree validates each field on its own; this checks what needs the rest of the agent:
detector names and their typed configs, the files the settings name (reference, policy,
overrides) and their contents. Each problem is one line naming the file or setting, the field
path, the bad value and what is allowed, so no command stops on these with a traceback.
"""

from __future__ import annotations

import pathlib

import pydantic

from agent import overrides, policy
from agent import settings as settings_mod
from agent.pipeline import reference_files
from detectors import base as detectors_base
from detectors import registry as registry_mod


def problems(settings: settings_mod.AgentSettings) -> list[str]:
    """Every problem found, one line each (empty: `run` would start)."""
    return [*_detectors(settings), *_reference(settings), *_policy(settings), *_overrides(settings)]


def _detectors(settings: settings_mod.AgentSettings) -> list[str]:
    found = []
    registry = registry_mod.default_registry()
    for name, options in settings.detectors.detectors.items():
        where = f"detectors.detectors.{name}"
        if name not in registry:
            valid = ", ".join(registry.names())
            found.append(f"{where}: unknown detector {name!r}; valid names: {valid}")
            continue
        try:
            registry.get(name).config_class.model_validate(dict(options or {}))
        except pydantic.ValidationError as exc:
            for item in exc.errors():
                field = ".".join(str(part) for part in item["loc"])
                value = "<missing>" if item["type"] == "missing" else repr(item.get("input"))
                found.append(f"{where}.{field}: got {value}; {item['msg']}")
    return found


def _reference(settings: settings_mod.AgentSettings) -> list[str]:
    path = settings.reference.path
    if settings.reference.source != "file" or path is None:
        return []
    if not path.is_file():
        return [
            f"reference.path: {str(path)!r} is not a file; "
            "give the file of reference records (JSONL, CSV or Parquet)"
        ]
    if path.suffix.lower() not in reference_files.SUFFIXES:
        allowed = ", ".join(sorted(reference_files.SUFFIXES))
        return [f"reference.path: {str(path)!r} has suffix {path.suffix!r}; use one of {allowed}"]
    return []


def _policy(settings: settings_mod.AgentSettings) -> list[str]:
    where = f"policy.path ({settings.policy.path})"
    try:
        loaded = policy.load_policy(settings.policy.path)
    except policy.PolicyError as exc:
        return [f"{where}: {line.strip()}" for line in str(exc).splitlines() if _is_problem(line)]
    configured = [sink.name for sink in settings.alerting.sinks]
    return [
        f"{where}: rules.{index}.sinks: {unknown} not in alerting.sinks; configured sinks are {configured}"
        for index, rule in enumerate(loaded.rules)
        if (unknown := [name for name in rule.sinks or () if name not in configured])
    ]


def _overrides(settings: settings_mod.AgentSettings) -> list[str]:
    path: pathlib.Path = settings.overrides.path
    if not path.exists():
        return []  # a missing override file means none (the agent picks it up when it appears)
    try:
        overrides.parse(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        return [f"overrides.path: cannot read {str(path)!r}: {exc.strerror}"]
    except overrides.OverrideError as exc:
        where = f"overrides.path ({path})"
        return [f"{where}: {line.strip()}" for line in str(exc).splitlines() if _is_problem(line)]
    return []


def _is_problem(line: str) -> bool:
    """The lines of a file error that name a problem (not its heading or its closing hint)."""
    return bool(line.strip()) and not line.startswith(("invalid ", "Fix the named fields"))


def summary(settings: settings_mod.AgentSettings) -> list[str]:
    """What is on and what is off, and why, one line each (start-up log, check-config)."""
    registry = registry_mod.default_registry()
    names = list(settings.detectors.detectors)
    labelled = [n for n in names if n in registry and registry.get(n).requires_labels]
    unlabelled = [n for n in names if n not in labelled]
    lines = [
        "incidents and metrics are named after each record's model_name",
        f"detectors on every prediction window: {', '.join(unlabelled) or 'none'}",
    ]
    if not labelled:
        lines.append("label-joined detectors: none configured")
    elif settings.kafka.labels_topic is None:
        lines.append(
            f"label-joined detectors ({', '.join(labelled)}): off, no labels source (set kafka.labels_topic)"
        )
    else:
        lines.append(
            f"label-joined detectors ({', '.join(labelled)}): on, labels from {settings.kafka.labels_topic}"
        )
    if settings.registry.tracking_uri is None:
        lines.append("rollback, retrain and canary: off, no model registry (set registry.tracking_uri)")
    else:
        mode = " in dry-run (target.dry_run)" if settings.target.dry_run else ""
        named = settings.registry.registered_model_name
        source = "registry.registered_model_name" if named else "runtime.model_name"
        lines.append(
            f"rollback, retrain and canary: on, target {settings.target.kind}{mode}, registered model "
            f"{named or settings.runtime.model_name!r} (from {source})"
        )
    real = {sink.name: sink.type for sink in settings.alerting.sinks if sink.type != "null"}
    alerts = [n for n in settings.alerting.alert_sinks if n in real]
    pages = [n for n in settings.alerting.page_sinks if n in real]
    if not alerts and not pages:
        sinks = "slack, pagerduty, alertmanager or webhook"
        lines.append(f"alerts and pages: log only (alerting.sinks has no {sinks} sink)")
    else:
        lines.append(
            f"alerts to {', '.join(alerts) or 'the log only'}; pages to {', '.join(pages) or 'the log only'}"
        )
    owners = settings.alerting.data_owner_sinks
    quality = [
        n for n in names if n in registry and registry.get(n).family is detectors_base.DetectorFamily.QUALITY
    ]
    if quality:
        route = f"to {', '.join(owners)}" if owners else "by the routes above (set alerting.data_owner_sinks)"
        lines.append(
            f"data-quality checks ({len(quality)}): on, notified {route}; they never retrain or roll back"
        )
    return lines

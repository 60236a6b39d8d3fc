"""``drift-agent audit``: the audit log as readable text, one line per entry, filtered.

By default decisions that changed nothing (severity none, no action, no incident moved) are
left out and counted at the end; ``--all`` shows them. A closed pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import re
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from agent.observability import audit

SEVERITIES = ("none", "minor", "moderate", "severe", "critical")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float) -> float:
    """``30m``, ``2h``, ``1d`` ago, or an RFC 3339 time; epoch seconds. ValueError names the forms."""
    found = _DURATION.match(text.strip())
    if found:
        return now - float(found.group(1)) * _SECONDS[found.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration (30m, 2h, 1d) or an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which entries ``drift-agent audit`` shows."""

    model: str | None = None
    min_severity: str | None = None
    since: float | None = None
    actions_only: bool = False
    show_quiet: bool = True  # decisions that changed nothing

    def keeps(self, entry: Mapping[str, Any]) -> bool:
        if self.since is not None and not (
            isinstance(entry.get("time"), int | float) and entry["time"] >= self.since
        ):
            return False
        kind = entry.get("kind")
        if self.actions_only and kind not in (audit.ACTION, audit.ACTION_DROPPED):
            return False
        if self.model is not None and _model_of(entry) != self.model:
            return False
        if self.min_severity is not None and _rank(_severity_of(entry)) < _rank(self.min_severity):
            return False
        return self.show_quiet or not quiet(entry)


def quiet(entry: Mapping[str, Any]) -> bool:
    """A decision with severity none, no action and no incident that moved."""
    if (
        entry.get("kind") != audit.DECISION
        or entry.get("severity") not in (None, "none")
        or entry.get("actions")
    ):
        return False
    events = [i.get("event") for i in entry.get("incidents", []) if isinstance(i, Mapping)]
    return all(event in ("none", "insufficient") for event in events)


def _rank(severity: object) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _severity_of(entry: Mapping[str, Any]) -> object:
    request = entry.get("request")
    return request.get("severity") if isinstance(request, Mapping) else entry.get("severity")


def _model_of(entry: Mapping[str, Any]) -> object:
    for holder, key in (("request", "model_name"), ("window", "model")):
        found = entry.get(holder)
        if isinstance(found, Mapping) and found.get(key):
            return found[key]
    incidents = [i for i in entry.get("incidents", []) if isinstance(i, Mapping)]
    return str(incidents[0].get("incident_id", "")).split("/")[0] if incidents else None


def _when(entry: Mapping[str, Any]) -> str:
    stamp = entry.get("time")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return "?" * 20
    moment = datetime.datetime.fromtimestamp(float(stamp), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    if kind == audit.DECISION:
        actions = ", ".join(str(a.get("kind")) for a in entry.get("actions", []) if isinstance(a, Mapping))
        incidents = ", ".join(
            f"{i.get('incident_id')}:{i.get('event')}"
            for i in entry.get("incidents", [])
            if isinstance(i, Mapping)
        )
        held = "; ".join(
            f"{s.get('kind')} of {s.get('incident_id')} {s.get('reason')}"
            for s in entry.get("suppressed", [])
            if isinstance(s, Mapping) and str(s.get("reason", "")).startswith("held: ")
        )
        return (
            f"severity={entry.get('severity')} rule={entry.get('rule_id')} "
            f"actions=[{actions}] incidents=[{incidents}]" + (f" {held}" if held else "")
        )
    if kind in (audit.ACTION, audit.ACTION_DROPPED):
        request = entry.get("request") or {}
        outcome = entry.get("outcome") or {}
        return (
            f"{request.get('kind')} incident={request.get('incident_id')} key={entry.get('idempotency_key')} "
            f"-> {outcome.get('status')} {outcome.get('message', '')}".rstrip()
        )
    if kind == audit.OVERRIDE_CHANGE:
        return f"overrides changed: {json.dumps(entry.get('changes', {}), sort_keys=True)}"
    if kind == audit.OVERRIDE_REJECTED:
        return f"override file rejected, previous kept: {entry.get('error')}"
    if kind == "unreadable":
        return f"(line {entry.get('line')} is not JSON: {entry.get('text')})"
    rest = {k: v for k, v in entry.items() if k not in ("time", "kind")}
    return json.dumps(rest, sort_keys=True)


def format_entries(lines: Iterable[str], keep: Filter | None = None) -> str:
    """Readable text, one line per kept entry, for ``drift-agent audit``."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = audit.parse_line(line, number)
        if keep is None or entry.get("kind") == "unreadable" or keep.keeps(entry):
            out.append(f"{_when(entry)}  {entry.get('kind', '?')!s:<17} {_describe(entry)}")
    return "\n".join(out)


def print_log(path: pathlib.Path, stream: IO[str] | None = None, keep: Filter | None = None) -> int:
    """Print an audit file readably; returns a process exit status (1 when it cannot be read)."""
    target = stream if stream is not None else sys.stdout
    try:
        with path.open(encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as exc:
        print(f"cannot read audit log {path}: {exc.strerror}", file=sys.stderr)
        return 1
    text = format_entries(lines, keep)
    hidden = 0
    if keep is not None and not keep.show_quiet:
        hidden = sum(
            1 for n, line in enumerate(lines, 1) if line.strip() and quiet(audit.parse_line(line, n))
        )
    try:
        if text:
            print(text, file=target)
        if hidden:
            print(f"({hidden} decisions that changed nothing left out; --all shows them)", file=target)
        target.flush()
    except BrokenPipeError:
        # The reader went away (| head): stop quietly; the interpreter's own flush must not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0

"""``drift-agent audit``: the audit log as readable text, one line per entry."""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from agent.observability import audit


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
        return (
            f"severity={entry.get('severity')} rule={entry.get('rule_id')} "
            f"actions=[{actions}] incidents=[{incidents}]"
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


def format_entries(lines: Iterable[str]) -> str:
    """Readable text, one line per entry, for ``drift-agent audit``."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = audit.parse_line(line, number)
        out.append(f"{_when(entry)}  {entry.get('kind', '?')!s:<17} {_describe(entry)}")
    return "\n".join(out)


def print_log(path: pathlib.Path, stream: IO[str] | None = None) -> int:
    """Print an audit file readably; returns a process exit status (1 when it cannot be read)."""
    target = stream if stream is not None else sys.stdout
    try:
        with path.open(encoding="utf-8") as handle:
            text = format_entries(handle)
    except OSError as exc:
        print(f"cannot read audit log {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if text:
        print(text, file=target)
    return 0

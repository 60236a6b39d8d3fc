"""The audit log: JSONL round trip, redaction, sink, readable text (Kafka sink: tests/integration/kafka)."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

import pytest

from agent.observability import audit, audit_view
from agent.respond import executor
from tests.unit.agent import factories as f

T0 = 1_900_000_000.0


def test_round_trip_of_a_decision_with_its_inputs(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    run = f.Run()
    run.windows([f.data_window(3)] * 3, T0)
    with audit.AuditLog(path, clock=lambda: T0) as log:
        executor.audit_decision(log, run.decisions[-1])
        log.flush()
    [entry] = list(audit.read_entries(path))
    assert entry["kind"] == audit.DECISION and entry["time"] == T0
    assert entry["severity"] == "moderate" and entry["rule_id"] == "data-drift"
    assert entry["actions"][0]["idempotency_key"] == "model/data_drift/all#1/alert/moderate"
    assert entry["inputs"] == [json.loads(json.dumps(r.to_json())) for r in f.data_window(3)]
    assert entry["incidents"][0]["event"] == "opened"


def test_secrets_are_redacted_at_any_depth(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    secrets = {
        "routing_key": "R0UTING",
        "webhook_url": "https://hooks.example/T0/SECRET",
        "nested": [{"api_token": "tok-123", "Password": "pw", "kept": "visible"}],
        "client_secret": "cs",
    }
    with audit.AuditLog(path) as log:
        log.record("action", request={"params": secrets})
    text = path.read_text()
    for secret in ("R0UTING", "hooks.example", "tok-123", '"pw"', '"cs"'):
        assert secret not in text
    [entry] = list(audit.read_entries(path))
    params = entry["request"]["params"]
    assert params["routing_key"] == audit.REDACTED
    assert params["nested"][0] == {"api_token": audit.REDACTED, "Password": audit.REDACTED, "kept": "visible"}


def test_non_finite_numbers_are_written_as_strict_json(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    with audit.AuditLog(path) as log:
        log.record("decision", inputs=[{"score": float("nan"), "threshold": float("inf")}])
    line = path.read_text().strip()
    assert json.loads(line)["inputs"] == [{"score": "nan", "threshold": "inf"}]
    assert "NaN" not in line


def test_sink_gets_every_line_and_a_failing_sink_does_not_stop_the_log(tmp_path: pathlib.Path) -> None:
    sent: list[bytes] = []
    with audit.AuditLog(tmp_path / "a.jsonl", sink=sent.append) as log:
        log.record("decision", severity="minor")
    assert [json.loads(b)["severity"] for b in sent] == ["minor"]

    def broken(_: bytes) -> None:
        raise ConnectionError("topic down")

    path = tmp_path / "b.jsonl"
    with audit.AuditLog(path, sink=broken) as log:
        log.record("decision", severity="minor")
        log.record("decision", severity="severe")
        assert log.sink_failures == 2
    assert len(path.read_text().splitlines()) == 2


def test_appends_across_reopen(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    for severity in ("minor", "severe"):
        with audit.AuditLog(path) as log:
            log.record("decision", severity=severity)
    assert [e["severity"] for e in audit.read_entries(path)] == ["minor", "severe"]


def test_format_entries_is_readable_and_tolerates_garbage() -> None:
    lines = [
        json.dumps(
            {
                "time": T0,
                "kind": "decision",
                "severity": "severe",
                "rule_id": "perf",
                "actions": [{"kind": "rollback"}],
                "incidents": [{"incident_id": "m/performance/all", "event": "opened"}],
            }
        ),
        json.dumps(
            {
                "time": T0 + 1,
                "kind": "action",
                "idempotency_key": "m/performance/all#1/rollback",
                "request": {"kind": "rollback", "incident_id": "m/performance/all"},
                "outcome": {"status": "succeeded", "message": "now serving 3"},
            }
        ),
        json.dumps({"time": T0 + 2, "kind": "override_rejected", "error": "pins.0.versoin: Extra inputs"}),
        "{not json",
        "",
    ]
    text = audit_view.format_entries(lines)
    rows = text.splitlines()
    assert len(rows) == 4
    assert rows[0].startswith("2030-03-17T17:46:40Z  decision")
    assert "severity=severe rule=perf actions=[rollback] incidents=[m/performance/all:opened]" in rows[0]
    assert (
        "rollback incident=m/performance/all key=m/performance/all#1/rollback -> succeeded now serving 3"
        in rows[1]
    )
    assert "pins.0.versoin" in rows[2]
    assert "line 4 is not JSON" in rows[3]


def test_print_log_reports_a_missing_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_view.print_log(tmp_path / "absent.jsonl") == 1
    assert "cannot read audit log" in capsys.readouterr().err
    path = tmp_path / "audit.jsonl"
    with audit.AuditLog(path, clock=lambda: T0) as log:
        log.record("decision", severity="minor", rule_id="r")
    out = io.StringIO()
    assert audit_view.print_log(path, out) == 0
    assert "severity=minor rule=r" in out.getvalue()


def _entries() -> list[str]:
    quiet = {"time": T0, "kind": "decision", "severity": "none", "actions": [], "incidents": []}
    paged = {
        "time": T0 + 60,
        "kind": "decision",
        "severity": "severe",
        "actions": [{"kind": "rollback"}],
        "incidents": [{"incident_id": "fraud/performance/all", "event": "opened"}],
        "window": {"model": "fraud"},
    }
    acted = {
        "time": T0 + 120,
        "kind": "action",
        "request": {"kind": "rollback", "model_name": "fraud", "severity": "severe", "incident_id": "i"},
        "outcome": {"status": "succeeded"},
    }
    other = {**paged, "time": T0 + 180, "severity": "moderate", "window": {"model": "churn"}}
    return [json.dumps(entry) for entry in (quiet, paged, acted, other)]


@pytest.mark.parametrize(
    ("keep", "shown"),
    [
        (audit_view.Filter(), 4),
        (audit_view.Filter(show_quiet=False), 3),
        (audit_view.Filter(model="fraud"), 2),
        (audit_view.Filter(min_severity="severe"), 2),
        (audit_view.Filter(actions_only=True), 1),
        (audit_view.Filter(since=T0 + 100), 2),
    ],
)
def test_filters_pick_entries_by_model_severity_time_and_kind(keep: audit_view.Filter, shown: int) -> None:
    assert len(audit_view.format_entries(_entries(), keep).splitlines()) == shown


def test_since_reads_durations_and_times() -> None:
    assert audit_view.parse_since("2h", 10_000.0) == 10_000.0 - 7200.0
    assert audit_view.parse_since("2030-03-17T17:46:40Z", 0.0) == T0
    with pytest.raises(ValueError, match="a duration"):
        audit_view.parse_since("yesterday", 0.0)


def test_the_cli_hides_quiet_decisions_and_ends_quietly_on_a_closed_pipe(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(_entries() * 2000) + "\n")
    shown = subprocess.run(
        [sys.executable, "-m", "agent.cli", "audit", "--path", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[-1] == "(2000 decisions that changed nothing left out; --all shows them)"
    # Like `| head -1`: read one line, then close the pipe while the command still writes.
    reader = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "audit", "--all", "--path", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline().strip()
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0
    errors = reader.stderr.read()
    assert "Traceback" not in errors and "BrokenPipe" not in errors


def test_a_decision_says_which_quality_incident_held_which_action() -> None:
    entry = {
        "time": T0,
        "kind": "decision",
        "severity": "severe",
        "rule_id": "data-drift",
        "actions": [{"kind": "alert"}],
        "incidents": [{"incident_id": "m/data_drift/all", "event": "opened"}],
        "suppressed": [
            {
                "kind": "retrain",
                "incident_id": "m/data_drift/all",
                "reason": "held: data quality incident m/quality/age open",
            },
            {"kind": "alert", "incident_id": "m/latency/all", "reason": "acknowledged"},
        ],
    }
    text = audit_view.format_entries([json.dumps(entry)])
    assert text.rstrip().endswith(
        "actions=[alert] incidents=[m/data_drift/all:opened] "
        "retrain of m/data_drift/all held: data quality incident m/quality/age open"
    )

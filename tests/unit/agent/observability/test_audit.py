"""The audit log: JSONL round trip, redaction, sink, readable text (Kafka sink: tests/integration/kafka)."""

from __future__ import annotations

import io
import json
import pathlib

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

"""Detector failures: every one counted, each (model, detector) audited at most once per interval."""

from __future__ import annotations

import pathlib

import prometheus_client

from agent.observability import audit, detector_failures
from detectors import suite


def test_failures_are_counted_each_and_audited_once_per_interval(tmp_path: pathlib.Path) -> None:
    registry = prometheus_client.CollectorRegistry()
    now = [0.0]
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    reporter = detector_failures.FailureReporter(registry, log, interval_s=60.0, clock=lambda: now[0])
    broken = [suite.Failed("ks", "ZeroDivisionError: division by zero")]
    for second in range(0, 130, 10):  # 13 windows, each failing
        now[0] = float(second)
        reporter.report("churn", broken, model_version="3", labelled=False)
    reporter.report("fraud", broken, model_version="1", labelled=True)
    log.close()
    assert registry.get_sample_value("drift_agent_detector_errors_total", {"detector": "ks"}) == 14
    entries = list(audit.read_entries(tmp_path / "audit.jsonl"))
    assert [(e["model"], e["unreported_since_last"]) for e in entries] == [
        ("churn", 0),  # t=0
        ("churn", 5),  # t=60: the five failures between were counted, not written
        ("churn", 5),  # t=120
        ("fraud", 0),  # another model is reported on its own
    ]
    assert {e["kind"] for e in entries} == {"detector_error"}
    assert entries[0]["error"] == "ZeroDivisionError: division by zero" and entries[0]["detector"] == "ks"

"""The on-call override file: hot reload, expiry, rejection of bad files, audit, precedence."""

from __future__ import annotations

import datetime
import json
import pathlib
import re

import prometheus_client
import pytest

from actions import base as actions_base
from actions import vocabulary
from agent import overrides
from agent.observability import audit
from tests.unit.agent import factories as f

REPO = pathlib.Path(__file__).resolve().parents[4]
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat()


def _watcher(
    tmp_path: pathlib.Path, clock: Clock
) -> tuple[overrides.OverrideWatcher, pathlib.Path, pathlib.Path]:
    path = tmp_path / "overrides.yaml"
    audit_path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(audit_path, clock=clock)
    return overrides.OverrideWatcher(path, audit=log, clock=clock, interval_s=1.0), path, audit_path


def _audit_kinds(path: pathlib.Path) -> list[str]:
    return [entry["kind"] for entry in audit.read_entries(path)]


def _request(kind: actions_base.ActionKind, **params: object) -> actions_base.ActionRequest:
    return actions_base.ActionRequest(
        kind=kind,
        model_name="fraud",
        idempotency_key="k",
        incident_id="fraud/data_drift/all",
        severity="moderate",
        reason="test",
        params=params,
    )


def test_a_change_is_picked_up_at_the_next_poll_and_audited_as_a_diff(tmp_path: pathlib.Path) -> None:
    clock = Clock(T0)
    watcher, path, audit_path = _watcher(tmp_path, clock)
    assert watcher.poll() is False  # no file: no overrides
    assert watcher.state.in_force(clock.now)["freeze"] == 0

    path.write_text(f"freeze:\n  - {{model: fraud, until: '{_iso(T0 + 3600)}', reason: migration}}\n")
    clock.now += 0.5
    assert watcher.maybe_poll() is False  # the interval has not passed yet
    clock.now += 0.5
    assert watcher.maybe_poll() is True
    assert watcher.state.freeze("fraud", clock.now) is not None
    assert watcher.state.freeze("other", clock.now) is None

    entries = list(audit.read_entries(audit_path))
    assert [e["kind"] for e in entries] == [audit.OVERRIDE_CHANGE]
    assert entries[0]["changes"] == {
        "freeze": {
            "added": [
                {"model": "fraud", "until": _iso(T0 + 3600).replace("+00:00", "Z"), "reason": "migration"}
            ],
            "removed": [],
        }
    }

    path.write_text("mute:\n  - {model: fraud, until: '2031-01-01T00:00:00Z'}\n")
    clock.now += 1.0
    assert watcher.maybe_poll() is True
    last = list(audit.read_entries(audit_path))[-1]
    assert set(last["changes"]) == {"freeze", "mute"}
    assert last["changes"]["freeze"]["added"] == [] and len(last["changes"]["freeze"]["removed"]) == 1


def test_an_unchanged_file_is_not_re_audited(tmp_path: pathlib.Path) -> None:
    clock = Clock(T0)
    watcher, path, audit_path = _watcher(tmp_path, clock)
    path.write_text("pins:\n  - {model: fraud, version: '7'}\n")
    assert watcher.poll() is True
    path.write_text("pins:\n  - {model: fraud, version: '7'}\n")  # same content, new mtime
    assert watcher.poll() is False
    assert _audit_kinds(audit_path) == [audit.OVERRIDE_CHANGE]


def test_invalid_file_is_rejected_and_the_previous_one_stays_in_force(tmp_path: pathlib.Path) -> None:
    clock = Clock(T0)
    registry = prometheus_client.CollectorRegistry()
    path = tmp_path / "overrides.yaml"
    log = audit.AuditLog(tmp_path / "audit.jsonl", clock=clock)
    watcher = overrides.OverrideWatcher(path, audit=log, clock=clock, registry=registry)
    path.write_text("pins:\n  - {model: fraud, version: '7'}\n")
    watcher.poll()

    path.write_text("pins:\n  - {model: fraud, versoin: '8'}\n")
    assert watcher.poll() is False
    assert watcher.state.pin("fraud", clock.now) is not None
    assert watcher.state.pin("fraud", clock.now).version == "7"  # type: ignore[union-attr]
    assert watcher.last_error is not None
    assert "pins.0.versoin" in watcher.last_error and "pins.0.version" in watcher.last_error
    rejected = list(audit.read_entries(tmp_path / "audit.jsonl"))[-1]
    assert rejected["kind"] == audit.OVERRIDE_REJECTED and "pins.0.versoin" in rejected["error"]
    assert registry.get_sample_value("drift_agent_override_reload_failures_total") == 1.0

    assert watcher.poll() is False  # the same bad content is not rejected (and audited) twice
    assert registry.get_sample_value("drift_agent_override_reload_failures_total") == 1.0

    path.write_text("pins:\n  - {model: fraud, version: '8'}\n")
    assert watcher.poll() is True
    assert watcher.last_error is None
    assert watcher.state.pin("fraud", clock.now).version == "8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mute:\n  - {model: fraud}\n", "mute.0.until"),
        ("freeze:\n  - {until: '2030-01-01T00:00:00'}\n", "timezone"),
        ("force:\n  - {id: a, action: explode}\n", "force.0.action"),
        ("force:\n  - {id: a, action: page}\n  - {id: a, action: alert}\n", "force.1.id 'a' is used twice"),
        ("canary:\n  - {model: m, command: pause}\n  - {model: m, command: promote}\n", "canary.1.model"),
        ("thresholds:\n  - {detector: ks, threshold: .nan}\n", "thresholds.0.threshold"),
        ("silence: []\n", "silence"),
        ("- just a list\n", "mapping at the top level"),
        ("mute: [\n", "not valid YAML"),
    ],
)
def test_invalid_entries_name_the_field(text: str, expected: str) -> None:
    with pytest.raises(overrides.OverrideError, match=re.escape(expected)):
        overrides.parse(text, "test.yaml")


def test_entries_stop_applying_at_their_expiry_without_a_file_change(tmp_path: pathlib.Path) -> None:
    clock = Clock(T0)
    watcher, path, audit_path = _watcher(tmp_path, clock)
    path.write_text(
        f"mute:\n  - {{model: '*', until: '{_iso(T0 + 60)}'}}\n"
        f"acknowledge:\n  - {{incident: fraud/data_drift/all, until: '{_iso(T0 + 120)}'}}\n"
    )
    watcher.poll()
    state = watcher.state
    kwargs = {"model": "fraud", "family": "data_drift", "detector": "ks", "feature": "a"}
    severity = vocabulary.Severity.SEVERE
    assert state.mute(**kwargs, severity=severity, now=T0 + 59) is not None
    assert state.mute(**kwargs, severity=severity, now=T0 + 60) is None
    assert state.acknowledged("fraud/data_drift/all", T0 + 119) is not None
    assert state.acknowledged("fraud/data_drift/all", T0 + 121) is None

    clock.now = T0 + 61
    assert watcher.poll() is False
    expired = list(audit.read_entries(audit_path))[-1]
    assert expired["changes"] == {
        "expired": {"mute": [{"model": "*", "until": _iso(T0 + 60).replace("+00:00", "Z")}]}
    }
    assert watcher.state.in_force(clock.now)["mute"] == 0
    assert watcher.state.in_force(clock.now)["acknowledge"] == 1


def test_watcher_thread_reloads_on_its_own(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "overrides.yaml"
    watcher = overrides.OverrideWatcher(path, interval_s=0.05)
    path.write_text("dry_run: true\n")
    watcher.start()
    try:
        # Bounded wait on the thread's own progress, not a timing assertion.
        for _ in range(200):
            if watcher.state.dry_run(T0) is not None:
                break
            watcher._stop.wait(0.05)
        assert watcher.state.dry_run(T0) is not None
    finally:
        watcher.stop()


def test_precedence_dry_run_then_pin_then_force_then_freeze_then_mute() -> None:
    now = T0
    until = "'2031-01-01T00:00:00Z'"
    everything = f.override_state(
        f"dry_run: true\npins:\n  - {{model: fraud, version: '7'}}\n"
        f"freeze:\n  - {{model: fraud, until: {until}}}\nmute:\n  - {{model: fraud, until: {until}}}\n"
    )
    rollback = _request(actions_base.ActionKind.ROLLBACK)
    assert everything.skip_reason(rollback, now).reason == "dry_run"  # type: ignore[union-attr]
    no_dry = f.override_state(
        f"pins:\n  - {{model: fraud, version: '7'}}\nfreeze:\n  - {{model: fraud, until: {until}}}\n"
        f"mute:\n  - {{model: fraud, until: {until}}}\n"
    )
    assert no_dry.skip_reason(rollback, now).reason == "pinned"  # type: ignore[union-attr]
    onto_pin = _request(actions_base.ActionKind.ROLLBACK, forced=True, to_version="7")
    assert no_dry.skip_reason(onto_pin, now) is None
    elsewhere = _request(actions_base.ActionKind.ROLLBACK, forced=True, to_version="6")
    assert no_dry.skip_reason(elsewhere, now).reason == "pinned"  # type: ignore[union-attr]
    frozen = f.override_state(
        f"freeze:\n  - {{model: fraud, until: {until}}}\nmute:\n  - {{model: fraud, until: {until}}}\n"
    )
    assert frozen.skip_reason(rollback, now).reason == "frozen"  # type: ignore[union-attr]
    assert frozen.skip_reason(_request(actions_base.ActionKind.RETRAIN, forced=True), now) is None
    alert = _request(actions_base.ActionKind.ALERT, family="data_drift", detectors=["ks"], features=["a"])
    assert frozen.skip_reason(alert, now).reason == "muted"  # type: ignore[union-attr]
    assert frozen.skip_reason(_request(actions_base.ActionKind.ALERT, forced=True), now) is None
    assert frozen.skip_reason(_request(actions_base.ActionKind.LOG), now) is None


def test_mute_by_feature_and_max_severity() -> None:
    state = f.override_state(
        "mute:\n  - {model: fraud, feature: 'zip_*', max_severity: moderate, until: '2031-01-01T00:00:00Z'}\n"
    )
    now = T0

    def alert(severity: str, features: list[str]) -> actions_base.ActionRequest:
        return actions_base.ActionRequest(
            kind=actions_base.ActionKind.ALERT,
            model_name="fraud",
            idempotency_key="k",
            incident_id="i",
            severity=severity,
            reason="r",
            params={"family": "data_drift", "detectors": ["ks"], "features": features},
        )

    assert state.skip_reason(alert("moderate", ["zip_a", "zip_b"]), now) is not None
    assert state.skip_reason(alert("severe", ["zip_a"]), now) is None  # worse than max_severity
    assert state.skip_reason(alert("moderate", ["zip_a", "income"]), now) is None  # one signal unmuted


def test_canary_commands_are_exposed_per_model() -> None:
    state = f.override_state("canary:\n  - {model: fraud, command: pause, id: op-9}\n")
    command = state.canary_command("fraud", T0)
    assert command is not None and command.command == "pause" and command.id == "op-9"
    assert state.canary_command("other", T0) is None


def test_every_example_in_the_shipped_file_is_valid_once_uncommented() -> None:
    text = (REPO / "config" / "overrides.yaml").read_text()
    assert overrides.parse(text, "shipped") == overrides.OverrideFile()  # all examples commented out
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^# \w+:\s*$", line))
    example = "\n".join(
        line[2:] for line in lines[start:] if re.match(r"^# \w+:\s*$", line) or line.startswith("#   ")
    )
    parsed = overrides.parse(example, "uncommented")
    counts = overrides.OverrideState(file=parsed).in_force(T0)
    assert counts == {
        "mute": 1,
        "dry_run": 1,
        "freeze": 1,
        "pin": 1,
        "threshold": 1,
        "force": 1,
        "acknowledge": 1,
        "canary": 1,
    }
    assert json.dumps(overrides.OverrideState(file=parsed).summary(T0))

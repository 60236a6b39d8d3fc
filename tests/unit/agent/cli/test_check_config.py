"""`check-config` refuses what `run` would refuse, one line per problem; `run` and `replay` stop
on the same lines before they start, never with a traceback."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

BROKEN = {
    "detectors": {"detectors": {"data_drift": {"drift_share": 2}, "adwn": {}}},
    "reference": {"source": "file", "path": "missing/reference.csv"},
    "policy": {"path": "missing/policy.yaml"},
}
EXPECTED = [
    "detectors.detectors.data_drift.drift_share: got 2; Input should be less than or equal to 1",
    "detectors.detectors.adwn: unknown detector 'adwn'; valid names: adwin,",
    "reference.path: 'missing/reference.csv' is not a file;",
    "policy.path (missing/policy.yaml): cannot read policy file missing/policy.yaml",
]


def _drift_agent(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, check=False, cwd=cwd
    )


def _write(tmp_path: pathlib.Path, name: str, data: object) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("command", ["check-config", "run", "replay"])
def test_every_problem_run_would_stop_on_is_one_line_and_no_traceback(
    tmp_path: pathlib.Path, command: str
) -> None:
    config = _write(tmp_path, "agent.yaml", BROKEN)
    args = {
        "check-config": [str(config)],
        "run": ["--config", str(config)],
        "replay": [
            "--config",
            str(config),
            "--reference",
            "r.jsonl",
            "--stream",
            "s.jsonl",
            "--events-out",
            "e",
        ],
    }[command]
    done = _drift_agent(command, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"invalid configuration in {config}:"
    for expected, line in zip(EXPECTED, lines[1:], strict=True):
        assert line.strip().startswith(expected), (expected, line)


def test_a_source_that_needs_a_location_without_one_names_both_fields(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path, "agent.yaml", {"reference": {"source": "file"}})
    done = _drift_agent("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "reference.source is file but reference.path is not set" in done.stderr


def test_a_bad_override_file_is_named_with_its_field(tmp_path: pathlib.Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("untill: 2030-01-01\nmute: []\n")
    config = _write(tmp_path, "agent.yaml", {"overrides": {"path": str(overrides)}})
    done = _drift_agent("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert f"overrides.path ({overrides}): untill: Extra inputs are not permitted" in done.stderr


def test_a_policy_rule_routing_to_a_sink_that_does_not_exist_is_refused(tmp_path: pathlib.Path) -> None:
    rules = [{"id": "payments", "family": "quality", "feature": "amount*", "sinks": ["payments-data"]}]
    policy_file = _write(tmp_path, "policy.yaml", {"rules": rules})
    config = _write(tmp_path, "agent.yaml", {"policy": {"path": str(policy_file)}})
    done = _drift_agent("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"policy.path ({policy_file}): rules.0.sinks: ['payments-data'] not in alerting.sinks; "
        "configured sinks are ['log']"
    ) in done.stderr
    sinks = {"sinks": [{"name": "log", "type": "null"}, {"name": "payments-data", "type": "null"}]}
    config = _write(tmp_path, "agent.yaml", {"policy": {"path": str(policy_file)}, "alerting": sinks})
    done = _drift_agent("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "data-quality checks (7): on, notified by the routes above" in done.stderr


def test_a_valid_file_ends_with_a_verdict(tmp_path: pathlib.Path) -> None:
    reference = tmp_path / "reference.jsonl"
    reference.write_text("{}\n")
    config = _write(tmp_path, "agent.yaml", {"reference": {"source": "file", "path": str(reference)}})
    done = _drift_agent("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"{config}: valid; `drift-agent run` would start with it"


def test_replay_on_missing_or_unusable_files_says_so_in_one_line(tmp_path: pathlib.Path) -> None:
    out = ["--events-out", str(tmp_path / "events.jsonl")]
    missing = _drift_agent("replay", "--reference", "absent.jsonl", "--stream", "s.jsonl", *out, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip() == "replay: cannot read reference file absent.jsonl: No such file or directory"
    )
    (tmp_path / "reference.jsonl").write_text(
        '{"request_id": "r1", "timestamp": 1, "model_name": "m", '
        '"model_version": "1", "features": {"x": 1.0}, "prediction": 1}\n'
    )
    no_stream = _drift_agent(
        "replay", "--reference", "reference.jsonl", "--stream", "s.jsonl", *out, cwd=tmp_path
    )
    assert no_stream.returncode == 2 and "Traceback" not in no_stream.stderr
    assert no_stream.stderr.strip().endswith(
        "replay: cannot read or write s.jsonl: No such file or directory"
    )


def test_the_verdict_says_what_is_off_and_why(tmp_path: pathlib.Path) -> None:
    plain = _drift_agent("check-config", str(_write(tmp_path, "plain.yaml", {})), cwd=tmp_path)
    assert "label-joined detectors (performance, adwin): off, no labels source (set kafka.labels_topic)" in (
        plain.stderr
    )
    assert "rollback, retrain and canary: off, no model registry (set registry.tracking_uri)" in plain.stderr
    assert "alerts and pages: log only" in plain.stderr
    wired = {
        "kafka": {"labels_topic": "labels"},
        "registry": {"tracking_uri": "http://mlflow:5000"},
        "alerting": {
            "sinks": [
                {
                    "name": "team",
                    "type": "webhook",
                    "url": "http://hooks.example/alert",
                    "secret_env": "HOOK_KEY",
                }
            ],
            "alert_sinks": ["team"],
            "page_sinks": ["team"],
        },
    }
    on = _drift_agent("check-config", str(_write(tmp_path, "wired.yaml", wired)), cwd=tmp_path)
    assert on.returncode == 0, on.stderr
    assert "label-joined detectors (performance, adwin): on, labels from labels" in on.stderr
    assert (
        "rollback, retrain and canary: on, target local, registered model 'model' (from runtime.model_name)"
        in on.stderr
    )
    assert "alerts to team; pages to team" in on.stderr


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        (
            "policy.yaml",
            "rules:\n  - {id: a, raise_afterr: 2}\n",
            "rules.0.raise_afterr: got 2; Extra inputs",
        ),
        (
            "on-call.yaml",
            "mute:\n  - {model: m, untill: 2030-01-01T00:00:00Z}\n",
            "mute.0.untill: Extra inputs",
        ),
    ],
)
def test_policy_and_override_files_are_checked_as_what_they_are(
    tmp_path: pathlib.Path, name: str, text: str, said: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    done = _drift_agent("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert said in done.stderr and "Extra inputs are not permitted" not in done.stderr.split(said)[0]


def test_the_shipped_policy_and_commented_out_override_file_pass_as_themselves(
    tmp_path: pathlib.Path,
) -> None:
    root = pathlib.Path(__file__).parents[4] / "config"
    policy = _drift_agent("check-config", str(root / "policy.yaml"), cwd=tmp_path)
    assert policy.returncode == 0 and policy.stderr.strip().endswith("a valid severity policy")
    overrides = _drift_agent("check-config", str(root / "overrides.yaml"), cwd=tmp_path)
    assert overrides.returncode == 0 and overrides.stderr.strip().endswith("a valid override file")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "--config", "absent.yaml"], "cannot read config file absent.yaml"),
        (
            ["replay", "--reference", "r.jsonl", "--stream", "s.jsonl", "--events-out", "e"],
            "replay: cannot read",
        ),
        (["check-config", "absent.yaml"], "cannot read config file absent.yaml"),
        (["config-reference", "--write", "no/such/dir/agent.yaml"], "cannot write no/such/dir/agent.yaml"),
        (["audit", "--path", "absent.jsonl"], "cannot read audit log absent.jsonl"),
        (["audit", "--path", "absent.jsonl", "--since", "yesterday"], "give a duration (30m, 2h, 1d)"),
        (["demo", "--scenario", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_every_subcommand_fails_in_one_line_without_a_traceback(
    tmp_path: pathlib.Path, args: list[str], said: str
) -> None:
    done = _drift_agent(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert said in done.stderr

"""Settings tree: precedence env > file > defaults, clear errors, the generated reference."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

from agent import cli
from agent import settings as settings_mod
from agent.settings import reference_doc as config_doc

REPO = pathlib.Path(__file__).resolve().parents[4]


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFT_AGENT_KAFKA__GROUP_ID", raising=False)
    loaded = settings_mod.load_settings(None)
    assert loaded.kafka.group_id == "drift-agent"
    assert loaded.window.size == 1000


def test_env_beats_file_beats_default(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"group_id": "from-file", "client_id": "file-client"}}))
    monkeypatch.setenv("DRIFT_AGENT_KAFKA__GROUP_ID", "from-env")
    loaded = settings_mod.load_settings(path)
    assert loaded.kafka.group_id == "from-env"  # env wins over the file
    assert loaded.kafka.client_id == "file-client"  # file wins over the default
    assert loaded.kafka.predictions_topic == "predictions"  # default where neither says


def test_invalid_value_names_field_value_and_allowed(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"window": {"kind": "weekly", "size": 3}}))
    with pytest.raises(settings_mod.ConfigError) as excinfo:
        settings_mod.load_settings(path)
    message = str(excinfo.value)
    assert "window.kind: got 'weekly'" in message
    assert "'count' or 'time'" in message
    assert "window.size: got 3" in message
    assert "greater than or equal to 10" in message


def test_unknown_key_is_an_error_not_ignored(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_server": "x:1"}}))
    with pytest.raises(
        settings_mod.ConfigError, match=r"kafka\.bootstrap_server: .*Extra inputs are not permitted"
    ):
        settings_mod.load_settings(path)


def test_non_mapping_file_is_rejected(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(settings_mod.ConfigError, match="must hold a mapping"):
        settings_mod.load_settings(path)


def test_every_field_has_a_description() -> None:
    missing: list[str] = []

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, prefix + name + ".")

    walk(settings_mod.AgentSettings, "")
    assert missing == []


def test_config_reference_file_is_current() -> None:
    rendered = config_doc.render_reference(
        settings_mod.AgentSettings, settings_mod.AgentSettings.model_construct()
    )
    committed = (REPO / "config" / "agent.yaml").read_text(encoding="utf-8")
    assert committed == rendered, (
        "config/agent.yaml is stale: run `drift-agent config-reference --write config/agent.yaml`"
    )
    # And the reference itself is a valid settings file equal to the defaults.
    assert (
        settings_mod.AgentSettings(**yaml.safe_load(committed))
        == settings_mod.AgentSettings.model_construct()
    )


def test_check_config_prints_effective_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"window": {"size": 500}}))
    assert cli.main(["check-config", str(path)]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["window"]["size"] == 500
    assert effective["kafka"]["group_id"] == "drift-agent"


def test_check_config_cli_exit_code_on_bad_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"http": {"port": 70000}}))
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "http.port: got 70000" in done.stderr


def test_a_bad_environment_variable_is_named_as_the_source(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"window": {"size": 500}}))
    monkeypatch.setenv("DRIFT_AGENT_HTTP__PORT", "70000")
    with pytest.raises(settings_mod.ConfigError) as raised:
        settings_mod.load_settings(path)
    assert "http.port: got '70000' (from the environment variable DRIFT_AGENT_HTTP__PORT)" in str(
        raised.value
    )

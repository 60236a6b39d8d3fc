"""Config validation and the state file: round trip, atomic replacement, readable errors."""

from __future__ import annotations

import json
import pathlib

import pydantic
import pytest

from actions.canary import config as config_mod
from actions.canary import state as state_mod
from tests.support.canary import factories as f


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "canary.steps is empty"),
        ([5, 0, 100], "every step must be in 1..100"),
        ([10, 5, 100], "must strictly increase"),
        ([5, 150], "every step must be in 1..100"),
    ],
)
def test_bad_steps_are_rejected_with_the_fix(steps: list[int], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        config_mod.CanaryConfig(steps=steps)


def test_unknown_keys_and_unknown_stattests_fail_at_start_up() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_failed_check"):
        config_mod.CanaryConfig.model_validate({"max_failed_check": 3})
    with pytest.raises(pydantic.ValidationError, match="unknown stattest 'kss'; valid names:"):
        config_mod.CanaryConfig(drift_stattest="kss")
    assert config_mod.CanaryConfig(drift_stattest="ks").drift_stattest == "ks"


def test_every_setting_is_described() -> None:
    for model in (config_mod.CanaryConfig, config_mod.CanaryChecks):
        undocumented = [name for name, field in model.model_fields.items() if not field.description]
        assert undocumented == [], f"{model.__name__} fields without a description"


def test_state_round_trips_through_the_file_with_pending_actions(tmp_path: pathlib.Path) -> None:
    cfg = f.config()
    state = f.started(cfg)
    state = state_mod.CanaryState(
        **{
            **state.__dict__,
            "pending": (state_mod.SetTraffic(10), state_mod.Rollback("slow", 3.0), state_mod.Alert("x", "y")),
            "baseline": f.stable(),
            "aliases_before": {"champion": "1"},
        }
    )
    path = tmp_path / "nested" / "canary.json"
    state_mod.save(path, state)
    assert state_mod.load(path) == state
    assert sorted(p.name for p in path.parent.iterdir()) == ["canary.json"]  # no partial file left behind
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["schema"] == state_mod.SCHEMA_VERSION and on_disk["pending"][1]["kind"] == "rollback"


def test_a_missing_file_means_no_canary(tmp_path: pathlib.Path) -> None:
    assert state_mod.load(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "expected a JSON object, got list"),
        ('{"schema": 99}', "schema 99 is not 1"),
        ('{"schema": 1, "canary_id": "x"}', "field 'model_name': Field required"),
    ],
)
def test_a_damaged_file_names_the_problem_and_the_fix(
    tmp_path: pathlib.Path, content: str, message: str
) -> None:
    path = tmp_path / "canary.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(state_mod.StateFileError, match=message) as caught:
        state_mod.load(path)
    assert str(path) in str(caught.value)
    assert "move" in str(caught.value) or "repair" in str(caught.value) or "finish" in str(caught.value)


def test_an_unknown_action_kind_in_the_file_is_rejected(tmp_path: pathlib.Path) -> None:
    data = f.started(f.config()).to_json()
    data["pending"] = [{"kind": "reboot"}]
    path = tmp_path / "canary.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(state_mod.StateFileError, match=r"field 'pending\.0"):
        state_mod.load(path)

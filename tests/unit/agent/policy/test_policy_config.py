"""Policy file loading: the shipped file equals the built-in policy; bad files name the field."""

from __future__ import annotations

import pathlib

import pytest

from actions import base as actions_base
from actions import vocabulary
from agent import policy, settings
from agent.settings import groups as settings_groups

REPO = pathlib.Path(__file__).resolve().parents[4]


def test_shipped_policy_file_equals_the_built_in_default() -> None:
    loaded = policy.load_policy(REPO / "config" / "policy.yaml")
    assert loaded == policy.PolicyConfig()


def test_model_name_comes_from_the_caller() -> None:
    loaded = policy.load_policy(REPO / "config" / "policy.yaml", model_name="fraud")
    assert loaded.model_name == "fraud"


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("rules:\n  - {id: a, raise_after: 0}\n", "rules.0.raise_after", "greater than or equal to 1"),
        ("rules:\n  - {id: a, rase_after: 2}\n", "rules.0.rase_after", "Extra inputs are not permitted"),
        ("rules:\n  - {id: a}\n  - {id: a}\n", "rules.1.id 'a' is used twice", "unique"),
        ("plans:\n  severe: [alert, explode]\n", "plans.severe.1", "'remediate'"),
        (
            "rules:\n  - {id: a, effect_size: {moderate: 0.5, severe: 0.1}}\n",
            "rules.0.effect_size",
            "must be >=",
        ),
        ("remediation:\n  on_sudden: reboot\n", "remediation.on_sudden", "'rollback'"),
        ("rules:\n  - {family: data_drift}\n", "rules.0.id", "Field required"),
        ("override_hint: 'mute {modle}'\n", "override_hint", "cannot fill placeholder 'modle'"),
    ],
)
def test_invalid_policy_names_the_field(tmp_path: pathlib.Path, text: str, field: str, hint: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(policy.PolicyError) as raised:
        policy.load_policy(path)
    message = str(raised.value)
    assert field in message and hint in message and str(path) in message


def test_unreadable_and_non_mapping_files_are_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(policy.PolicyError, match="cannot read policy file"):
        policy.load_policy(tmp_path / "absent.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(policy.PolicyError, match="mapping at the top level"):
        policy.load_policy(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(policy.PolicyError, match="not valid YAML"):
        policy.load_policy(broken)


def test_action_kinds_lists_every_kind_the_plans_can_ask_for() -> None:
    kinds = policy.action_kinds(policy.PolicyConfig())
    expected = {"log", "alert", "page", "resolve", "rollback", "retrain"}
    assert {k.value for k in kinds} == expected
    quiet = policy.PolicyConfig(
        rules=(policy.Rule(id="all"),),
        plans=policy.ActionPlans(moderate=("log",), severe=("log",), critical=("log",)),
    )
    assert policy.action_kinds(quiet) == {actions_base.ActionKind.LOG}
    # A rule's own plans count too (the data-quality rule pages).
    quality = policy.PolicyConfig(rules=policy.default_rules()[:1], plans=quiet.plans)
    assert {k.value for k in policy.action_kinds(quality)} == {"log", "alert", "page", "resolve"}


def test_bands_grade_each_level_and_ignore_missing_values() -> None:
    bands = policy.Bands(moderate=0.2, severe=0.5)
    assert [bands.grade(v) for v in (None, 0.1, 0.2, 0.49, 0.5, 9.0)] == [
        vocabulary.Severity.NONE,
        vocabulary.Severity.NONE,
        vocabulary.Severity.MODERATE,
        vocabulary.Severity.MODERATE,
        vocabulary.Severity.SEVERE,
        vocabulary.Severity.SEVERE,
    ]
    assert bands.grade(float("nan")) is vocabulary.Severity.NONE


def test_settings_tree_carries_the_policy_overrides_and_audit_groups() -> None:
    loaded = settings.AgentSettings(
        policy={"path": "p.yaml"}, overrides={"reload_interval_s": 2}, audit={"kafka_topic": "audit"}
    )
    assert loaded.policy.path == pathlib.Path("p.yaml")
    assert loaded.overrides.reload_interval_s == 2
    assert loaded.audit.kafka_topic == "audit"
    with pytest.raises(ValueError, match=r"overrides\.reload_interval_s"):
        settings.AgentSettings(overrides={"reload_interval_s": 0})
    for group in (settings_groups.PolicySettings, loaded.overrides.__class__, loaded.audit.__class__):
        assert all(field.description for field in group.model_fields.values())

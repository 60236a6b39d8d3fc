"""The rules the chart renders into its PrometheusRule, checked by promtool."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml

from tests.support.helm.monitoring import rendered_prometheus_rule, shipped_rules

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.mark.skipif(not pathlib.Path(PROMTOOL).exists(), reason="promtool absent: apt-get install prometheus")
def test_rendered_rules_pass_promtool(tmp_path: pathlib.Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        yaml.safe_dump({"groups": rendered_prometheus_rule()["spec"]["groups"]}), encoding="utf-8"
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(shipped_rules()['groups'][0]['rules'])} rules found" in result.stdout


def test_promtool_would_catch_a_broken_rule(tmp_path: pathlib.Path) -> None:
    if not pathlib.Path(PROMTOOL).exists():
        pytest.skip("promtool absent: apt-get install prometheus")
    groups = rendered_prometheus_rule()["spec"]["groups"]
    groups[0]["rules"][0]["expr"] = "up{job=~" + '".*drift-agent.*"'  # unbalanced brace
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0

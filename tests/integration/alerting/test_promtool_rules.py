"""The agent's own alert rules under promtool: the file is valid and each alert fires on sample series."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.alerts.rules import EXPECTED_ALERTS, ROOT, RULES, RULES_TEST

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed; apt-get install -y prometheus (scripts/setup.sh --test)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


@needs_promtool
def test_promtool_accepts_the_rules_file() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


@needs_promtool
def test_every_alert_fires_in_the_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

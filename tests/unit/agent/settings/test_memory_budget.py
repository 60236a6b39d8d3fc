"""memory.budget_mib: one budget, byte bounds by share, the start-up check of windows and reference."""

from __future__ import annotations

import numpy as np
import pytest

from agent import settings as settings_mod
from agent.ingest import records
from agent.settings import budget, groups

MIB = 1024 * 1024


def test_the_budget_comes_from_the_setting_else_the_container_limit_else_the_default() -> None:
    assert groups.MemorySettings().budget_bytes == groups.DEFAULT_MEMORY_BUDGET_MIB * MIB
    from_limit = groups.MemorySettings(container_limit_mib=4096, budget_fraction=0.25)
    assert from_limit.budget_bytes == 1024 * MIB
    assert groups.MemorySettings(budget_mib=100, container_limit_mib=4096).budget_bytes == 100 * MIB


def test_the_chart_sets_the_limit_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_AGENT_MEMORY__CONTAINER_LIMIT_MIB", "2048")
    loaded = settings_mod.load_settings(None)
    assert loaded.memory.budget_bytes == 1024 * MIB
    assert loaded.memory.bytes_for("label_join") == int(1024 * MIB * groups.MEMORY_SHARES["label_join"])


def test_shares_split_the_whole_budget_and_an_unknown_buffer_is_named() -> None:
    assert sum(groups.MEMORY_SHARES.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"unknown memory buffer 'join'; valid: \['audit'"):
        groups.MemorySettings().bytes_for("join")


def settings_with(**memory: int) -> settings_mod.AgentSettings:
    return settings_mod.AgentSettings(memory=groups.MemorySettings(**memory))


def test_a_reference_that_cannot_fit_refuses_to_start_naming_the_settings() -> None:
    with pytest.raises(settings_mod.ConfigError) as raised:
        budget.check_windows_and_reference(
            settings_with(budget_mib=64), reference_rows=100_000, width=200, time_window_records=100_000
        )
    message = str(raised.value)
    for name in ("reference.max_rows", "window.size", "memory.budget_mib", "100000 rows x 200 values"):
        assert name in message


def test_many_open_windows_that_could_not_fit_are_a_warning() -> None:
    warning = budget.check_windows_and_reference(
        settings_with(budget_mib=512), reference_rows=10_000, width=200, time_window_records=100_000
    )
    assert warning is not None and "window.max_open_windows=256" in warning
    small = budget.check_windows_and_reference(
        settings_with(budget_mib=512), reference_rows=1000, width=2, time_window_records=100_000
    )
    assert small is None


def test_vector_components_weigh_as_float32_not_as_python_values() -> None:
    record = records.PredictionRecord(
        "r", 1.0, "m", "1", {"a": 1.0, "b": 2.0}, 0.5, embeddings={"text": np.zeros(768, "<f4").tobytes()}
    )
    assert budget.width_of([record]) == (2, 768)
    # 20 000 reference rows of a 768-d embedding fit the default budget; as 768 scalar features
    # buffered as Python values, one window alone would not.
    assert (
        budget.check_windows_and_reference(
            settings_with(), reference_rows=20_000, width=20, vector_width=768, time_window_records=100_000
        )
        is not None  # the 256 open windows warn, but it starts
    )
    with pytest.raises(settings_mod.ConfigError, match=r"\+ 768 vector components"):
        budget.check_windows_and_reference(
            settings_with(budget_mib=32),
            reference_rows=20_000,
            width=20,
            vector_width=768,
            time_window_records=1,
        )

"""NVML readings: a real NVML where the machine has one, None (not an error) where it has none."""

from __future__ import annotations

import importlib
import types

import pytest

from agent.observability import gpu as nvml
from agent.settings import groups as settings_groups
from detectors import latency


def nvml_works() -> bool:
    try:
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


def test_reading_matches_what_the_machine_has() -> None:
    reading = nvml.read_nvml()
    if not nvml_works():
        assert reading is None
        return
    assert reading is not None
    assert 0.0 <= reading["utilization_gpu_pct"] <= 100.0
    assert reading["memory_total_bytes"] > 0.0
    assert set(latency.gpu_context([reading])) >= {"gpu_utilization_mean_pct", "gpu_memory_used_max_fraction"}


class _NoDriver(Exception):
    pass


def test_missing_driver_gives_none() -> None:
    # A binding whose init fails the way pynvml's does without a driver (no GPU can be faked here).
    def fail() -> None:
        raise _NoDriver("NVML Shared Library Not Found")

    binding = types.SimpleNamespace(nvmlInit=fail, nvmlShutdown=lambda: None)
    assert nvml.read_nvml(module=binding) is None


def test_settings_group_rejects_typos() -> None:
    with pytest.raises(ValueError, match="extra"):
        settings_groups.GpuSettings.model_validate({"device_idx": 1})

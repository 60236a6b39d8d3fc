"""NVML readings: a real NVML where the machine has one, None (not an error) where it has none."""

from __future__ import annotations

import importlib
import types

import prometheus_client
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


class _Board:
    """An NVML binding for one board (no GPU here: the binding is what cannot run on this machine)."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self) -> None:
        self.reads = 0

    def nvmlInit(self) -> None:
        self.reads += 1

    def nvmlShutdown(self) -> None:
        return None

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=37)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return 250_000  # milliwatts


def test_readings_reach_the_metrics_and_are_reused_within_the_interval() -> None:
    registry = prometheus_client.CollectorRegistry()
    board = _Board()
    collector = nvml.register(registry, settings_groups.GpuSettings(sample_interval_s=3600), module=board)
    assert collector is not None
    device = {"device": "0"}
    assert registry.get_sample_value("drift_agent_gpu_utilization_percent", device) == 37.0
    assert registry.get_sample_value("drift_agent_gpu_memory_used_bytes", device) == 2 * 2**30
    assert registry.get_sample_value("drift_agent_gpu_power_watts", device) == 250.0
    assert board.reads == 1  # five gauges and a second scrape, one NVML reading


def test_disabled_or_absent_nvml_exports_no_gpu_samples() -> None:
    registry = prometheus_client.CollectorRegistry()
    assert nvml.register(registry, settings_groups.GpuSettings(nvml_enabled=False)) is None
    assert registry.get_sample_value("drift_agent_gpu_utilization_percent", {"device": "0"}) is None
    binding = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(_NoDriver("no driver")))
    nvml.register(registry, settings_groups.GpuSettings(), module=binding)
    assert registry.get_sample_value("drift_agent_gpu_utilization_percent", {"device": "0"}) is None

"""GPU readings from NVML (nvidia-ml-py), exported as gauges beside the latency detectors.

NVML is optional: no driver, no GPU or no ``pynvml`` module means ``read_nvml`` returns None,
which callers treat as "no GPU context", never as an error. ``pynvml`` is imported lazily so
the agent starts on machines without it.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import metrics_core, registry

from agent.observability import collectors
from agent.settings import groups

LOG = logging.getLogger(__name__)


def read_nvml(device_index: int = 0, module: Any = None) -> dict[str, float] | None:
    """One reading of GPU ``device_index`` (utilisation, memory, temperature and, where reported, power).

    ``module`` is the NVML binding to use (default: ``pynvml``, imported here); returns None when
    it is missing or NVML cannot be initialised (no driver or no such device).
    """
    nvml = module
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError has many subclasses; any of them means "no NVML here"
        LOG.debug("NVML unavailable: %s", exc)
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        utilisation = nvml.nvmlDeviceGetUtilizationRates(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        reading = {
            "utilization_gpu_pct": float(utilisation.gpu),
            "memory_used_bytes": float(memory.used),
            "memory_total_bytes": float(memory.total),
            "temperature_c": float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        }
        try:
            reading["power_w"] = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        except Exception:  # power readings are not supported on every board
            LOG.debug("NVML power reading not supported on device %d", device_index)
        return reading
    except Exception as exc:
        LOG.debug("NVML reading of device %d failed: %s", device_index, exc)
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML may fail; nothing to undo
            LOG.debug("NVML shutdown failed")


# NVML reading key -> (metric name without prefix, help text).
_GAUGES = {
    "utilization_gpu_pct": (
        "gpu_utilization_percent",
        "GPU utilisation in percent (NVML).",
    ),
    "memory_used_bytes": ("gpu_memory_used_bytes", "GPU memory in use in bytes (NVML)."),
    "memory_total_bytes": ("gpu_memory_total_bytes", "GPU memory in bytes (NVML)."),
    "temperature_c": ("gpu_temperature_celsius", "GPU temperature in degrees Celsius (NVML)."),
    "power_w": ("gpu_power_watts", "GPU power draw in watts (NVML), where the board reports it."),
}


class GpuCollector(registry.Collector):
    """NVML readings as gauges, read at scrape time and reused for ``sample_interval_s``.

    Beside the latency detectors' GPU-side latency, these say whether a slower GPU is a busier,
    hotter or memory-starved one. Without NVML the gauges have no samples (never an error).
    """

    def __init__(
        self,
        config: groups.GpuSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        module: Any = None,
    ) -> None:
        self._device = config.device_index
        self._interval_s = config.sample_interval_s
        self._clock = clock
        self._module = module
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._reading: dict[str, float] | None = None

    def reading(self) -> dict[str, float] | None:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._interval_s:
                self._reading = read_nvml(self._device, self._module)
                self._read_at = now
            return self._reading

    @staticmethod
    def _families() -> dict[str, metrics_core.GaugeMetricFamily]:
        return {
            key: metrics_core.GaugeMetricFamily(collectors.PREFIX + name, help_text, labels=["device"])
            for key, (name, help_text) in _GAUGES.items()
        }

    def describe(self) -> Iterable[metrics_core.Metric]:
        return list(self._families().values())

    def collect(self) -> Iterator[metrics_core.Metric]:
        families = self._families()
        for key, value in (self.reading() or {}).items():
            if key in families:
                families[key].add_metric([str(self._device)], value)
        yield from families.values()


def register(
    metrics_registry: prometheus_client.CollectorRegistry, config: groups.GpuSettings, *, module: Any = None
) -> GpuCollector | None:
    """Export NVML readings on ``metrics_registry`` unless ``gpu.nvml_enabled`` is false."""
    if not config.nvml_enabled:
        return None
    collector = GpuCollector(config, module=module)
    metrics_registry.register(collector)
    return collector

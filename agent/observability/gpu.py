"""GPU readings from NVML (nvidia-ml-py), for context beside the latency detectors.

NVML is optional: no driver, no GPU or no ``pynvml`` module means ``read_nvml`` returns None,
which callers treat as "no GPU context", never as an error. ``pynvml`` is imported lazily so
the agent starts on machines without it. The numbers go to ``detectors.latency.gpu_context``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

LOG = logging.getLogger(__name__)


def read_nvml(device_index: int = 0, module: Any = None) -> dict[str, float] | None:
    """One reading of GPU ``device_index``: the keys ``detectors.latency.gpu_context`` understands.

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

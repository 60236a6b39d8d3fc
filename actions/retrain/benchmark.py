"""Latency and memory of a candidate model, measured the way the gates need them.

Latency: one timing per batch inference. On a CUDA device, torch CUDA events around the forward
pass (the GPU's own clock, no host-side queueing); on CPU, ``time.perf_counter`` wall time.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset (what the caching
allocator handed out). On CPU, the process's peak resident set while the model loads and
predicts, minus the resident set before: Linux's ``VmHWM`` after resetting it through
``/proc/self/clear_refs``. Where that file cannot be written, ``tracemalloc``'s peak (Python
and numpy allocations only; torch's own CPU allocator is invisible to it) is used, and the
method says so.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time
import tracemalloc
from collections.abc import Callable, Mapping

import numpy as np
import torch

from actions.retrain import dataset, model

_STATUS = pathlib.Path("/proc/self/status")
_CLEAR_REFS = pathlib.Path("/proc/self/clear_refs")
_RESET_PEAK_RSS = "5"  # proc(5): writing 5 resets the peak resident set size (VmHWM)
_KIB = 1024.0
_MIB = 1024.0 * 1024.0


@dataclasses.dataclass(frozen=True)
class LatencyReport:
    p50_ms: float
    p95_ms: float
    batch_size: int
    repeats: int
    method: str  # "cuda_events" | "wall_time"


@dataclasses.dataclass(frozen=True)
class MemoryReport:
    peak_mb: float
    method: str  # "cuda_max_memory_allocated" | "rss_peak_delta" | "model_tensors" | "tracemalloc_peak"


def benchmark_batch(features: Mapping[str, dataset.Column], batch_size: int) -> dict[str, dataset.Column]:
    """``batch_size`` rows cycled from ``features`` (a small held-out window still fills a batch)."""
    size = len(next(iter(features.values()))) if features else 0
    if size == 0:
        raise ValueError("no rows to benchmark on: the held-out window is empty")
    index = np.arange(batch_size) % size
    return {name: column[index] for name, column in features.items()}


def measure_latency(
    predictor: model.Predictor,
    features: Mapping[str, dataset.Column],
    *,
    batch_size: int,
    repeats: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyReport:
    batch = benchmark_batch(features, batch_size)
    for _ in range(warmup):
        predictor.predict(batch)
    timings: list[float] = []
    if device.type == "cuda":
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            start.record()
            predictor.predict(batch)
            end.record()
            torch.cuda.synchronize(device)
            timings.append(float(start.elapsed_time(end)))
        method = "cuda_events"
    else:
        for _ in range(repeats):
            began = clock()
            predictor.predict(batch)
            timings.append((clock() - began) * 1000.0)
        method = "wall_time"
    values = np.array(timings)
    return LatencyReport(
        p50_ms=float(np.percentile(values, 50)),
        p95_ms=float(np.percentile(values, 95)),
        batch_size=batch_size,
        repeats=repeats,
        method=method,
    )


def measure_peak_memory(
    load: Callable[[], model.Predictor],
    features: Mapping[str, dataset.Column],
    *,
    batch_size: int,
    device: torch.device,
) -> MemoryReport:
    """Peak memory of loading the model and predicting one benchmark batch."""
    batch = benchmark_batch(features, batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        predictor = load()
        predictor.predict(batch)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del predictor
        return MemoryReport(peak / _MIB, "cuda_max_memory_allocated")
    if _reset_peak_rss():
        before_kib = _status_kib("VmRSS")
        predictor = load()
        predictor.predict(batch)
        peak_kib = _status_kib("VmHWM")
        rss_mib = max(0.0, peak_kib - before_kib) / _KIB
        # In a process that freed memory earlier, the allocator reuses it and RSS need not grow at
        # all; the model's own tensors are resident whatever the allocator did: a floor.
        weights_mib = _tensor_mib(predictor)
        del predictor
        if weights_mib > rss_mib:
            return MemoryReport(weights_mib, "model_tensors")
        return MemoryReport(rss_mib, "rss_peak_delta")
    tracemalloc.start()
    try:
        predictor = load()
        predictor.predict(batch)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return MemoryReport(peak_bytes / _MIB, "tracemalloc_peak")


def _tensor_mib(predictor: object) -> float:
    """Bytes of the parameters and buffers of the predictor's torch network (0 without one)."""
    network = getattr(predictor, "network", None)
    if not isinstance(network, torch.nn.Module):
        return 0.0
    tensors = [*network.parameters(), *network.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / _MIB


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS, encoding="ascii")
        _status_kib("VmHWM")
    except (OSError, ValueError):
        return False
    return True


def _status_kib(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(encoding="ascii"), re.MULTILINE)
    if match is None:
        raise ValueError(f"{_STATUS} has no {field} line")
    return float(match.group(1))

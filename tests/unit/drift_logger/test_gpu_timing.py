"""GPU timing on a machine without CUDA: a clear error, and no GPU events.

The event path end to end (records on a real topic): tests/integration/kafka/test_logger_gpu_timing.py.
"""

from __future__ import annotations

import pytest
import torch

import drift_logger
from drift_logger import timing


def test_gpu_timing_true_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the error path cannot occur")
    with pytest.raises(ValueError, match="gpu_timing=True but no CUDA device"):
        drift_logger.PredictionLogger("127.0.0.1:9", "t", model_name="m", model_version="1", gpu_timing=True)


def test_no_gpu_events_on_a_cpu_only_machine() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert timing.cuda_event_factory() is None

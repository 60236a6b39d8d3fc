"""Vectors on the request path: held by reference (never turned into lists there), checked for shape.

The sender thread is held inside the producer factory (``GatedFactory``), so what these tests
inspect is exactly what the request thread left in the buffer. Records written by the sender
and read back from a real broker: tests/integration/kafka/test_logger_vectors.py.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import drift_logger
from drift_logger import vectors
from tests.support.logger import helpers


@pytest.fixture
def held_logger() -> Iterator[drift_logger.PredictionLogger]:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = drift_logger.PredictionLogger(factory, "predictions", model_name="m", model_version="1")
    try:
        yield logger
    finally:
        factory.open()
        logger.close(timeout_s=0.1)


def test_a_numpy_vector_is_queued_as_the_same_array_not_a_list(
    held_logger: drift_logger.PredictionLogger,
) -> None:
    vector = np.linspace(0.0, 1.0, 768)
    embedding = np.ones(16, dtype=np.float32)
    assert held_logger.log("r", {"x": 1.0, "v": vector}, prediction=1, embeddings={"e": embedding})
    (queued,) = helpers.queued_records(held_logger)
    assert queued["features"]["v"] is vector
    assert queued["embeddings"]["e"] is embedding
    assert queued["features"]["x"] == 1.0


def test_a_tensor_is_queued_detached_on_the_same_storage(held_logger: drift_logger.PredictionLogger) -> None:
    weights = torch.randn(32, requires_grad=True)
    embedding = weights * 2.0  # part of an autograd graph the logger must not keep alive
    assert held_logger.log("r", {"x": 1.0}, prediction=1, embeddings={"e": embedding})
    (queued,) = helpers.queued_records(held_logger)
    held = queued["embeddings"]["e"]
    assert isinstance(held, torch.Tensor)
    assert held.data_ptr() == embedding.data_ptr()  # a view: nothing was copied
    assert not held.requires_grad and held.grad_fn is None


def test_copy_vectors_takes_a_float32_copy_on_the_request_thread() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = drift_logger.PredictionLogger(
        factory, "predictions", model_name="m", model_version="1", copy_vectors=True
    )
    try:
        vector = np.arange(4, dtype=np.float64)
        tensor = torch.arange(4, dtype=torch.float64)
        assert logger.log("r", {"v": vector}, prediction=1, embeddings={"t": tensor})
        vector[0] = tensor[0] = 99.0  # the server reuses its buffers after logging
        (queued,) = helpers.queued_records(logger)
        assert queued["features"]["v"].dtype == np.float32
        assert queued["features"]["v"].tolist() == [0.0, 1.0, 2.0, 3.0]
        assert queued["embeddings"]["t"].dtype == torch.float32
        assert queued["embeddings"]["t"].tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        factory.open()
        logger.close(timeout_s=0.1)


def test_0d_numpy_values_become_plain_numbers_and_a_0d_tensor_waits_for_the_sender(
    held_logger: drift_logger.PredictionLogger,
) -> None:
    features = {"a": np.float32(0.5), "b": np.array(3), "c": np.bool_(True), "d": torch.tensor(2.5)}
    assert held_logger.log("r", features, prediction=1)
    (queued,) = helpers.queued_records(held_logger)
    got = queued["features"]
    assert (got["a"], got["b"], got["c"]) == (0.5, 3, True)
    assert (type(got["a"]), type(got["b"]), type(got["c"])) == (float, int, bool)
    # item() on a CUDA tensor would wait for the GPU: the sender reads it (integration test).
    assert isinstance(got["d"], torch.Tensor)


@pytest.mark.parametrize(
    ("features", "embeddings", "message"),
    [
        ({"v": np.zeros((1, 768))}, None, r"features\.v is a numpy array .* shape \(1, 768\).*log v\[0\]"),
        ({"v": np.zeros((2, 3))}, None, r"features\.v .* shape \(2, 3\); it must be .*reshape\(-1\)"),
        ({}, {"e": torch.zeros(1, 4)}, r"embeddings\.e is a torch tensor .* shape \(1, 4\).*log e\[0\]"),
        ({}, {"e": np.zeros(0)}, r"embeddings\.e is an empty vector"),
        (
            {"v": np.array(["a", "b"])},
            None,
            r"features\.v is a numpy array of dtype <U1; a vector must hold numbers",
        ),
        ({}, {"e": 0.5}, r"embeddings\.e is a float; an embedding must be a 1-D vector"),
        ({}, {"e": np.float32(0.5)}, r"embeddings\.e is a numpy scalar"),
        ({}, {"e": torch.tensor(0.5)}, r"embeddings\.e is a 0-d torch tensor"),
        ({"e": 1.0}, {"e": np.zeros(3)}, r"'e' is both under features and embeddings"),
    ],
)
def test_what_is_not_a_vector_is_refused_at_log_time_with_the_fix(
    held_logger: drift_logger.PredictionLogger,
    caplog: pytest.LogCaptureFixture,
    features: dict[str, Any],
    embeddings: dict[str, Any] | None,
    message: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="drift_logger.logger"):
        assert not held_logger.log("r", features, prediction=1, embeddings=embeddings)
    stats = held_logger.stats()
    assert (stats.logged, stats.dropped_invalid) == (0, 1)
    assert helpers.queued_records(held_logger) == []
    warnings = [r.getMessage() for r in caplog.records]
    assert any(re.search(message, text) for text in warnings), warnings


def test_request_scope_takes_embeddings_set_inside_the_block(
    held_logger: drift_logger.PredictionLogger,
) -> None:
    embedding = torch.randn(1, 8)
    with held_logger.request(features={"x": 1.0}, request_id="scoped") as req:
        req.prediction = 1
        req.embeddings = {"e": embedding[0]}
    held_logger.timed(lambda rows: rows.sum(), embedding, features={"x": 2.0}, embeddings={"e": embedding[0]})
    scoped, timed = helpers.queued_records(held_logger)
    for record in (scoped, timed):
        assert record["embeddings"]["e"].data_ptr() == embedding.data_ptr()


def test_neither_torch_nor_numpy_is_imported_for_records_without_them() -> None:
    """A numpy-only server never loads torch; a plain server loads neither (sender thread included)."""
    code = """
import json, sys
import drift_logger
from drift_logger import vectors
sent = []
class Delivered:
    def add_callback(self, fn, *args): fn(*args, None)
    def add_errback(self, fn, *args): pass
class Sink:
    def send(self, topic, value=None, key=None):
        sent.append(json.loads(value))
        return Delivered()
    def flush(self, timeout=None): pass
    def close(self, timeout=None): pass
logger = drift_logger.PredictionLogger(Sink, "t", model_name="m", model_version="1")
logger.log("plain", {"x": 1.0, "v": [1.0, 2.0]}, prediction=1, embeddings={"e": [0.5]})
loaded_plain = [m for m in ("numpy", "torch") if m in sys.modules]
import numpy
features = {"x": numpy.float32(2.0), "v": numpy.ones(3)}
logger.log("numpy", features, prediction=1, embeddings={"e": numpy.zeros(2)})
assert logger.close(timeout_s=10)
print(json.dumps({"plain": loaded_plain, "torch": "torch" in sys.modules, "sent": sent}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["plain"] == []
    assert result["torch"] is False
    plain, with_numpy = result["sent"]
    assert (plain["features"]["v"], plain["embeddings"]) == ([1.0, 2.0], {"e": [0.5]})
    assert with_numpy["features"] == {"x": 2.0, "v": [1.0, 1.0, 1.0]}
    assert with_numpy["embeddings"] == {"e": [0.0, 0.0]}


def test_every_float32_reads_back_as_itself_from_the_sender_text() -> None:
    """9 significant digits: read as a double, then rounded to float32 (as the agent does), exact."""
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]  # subnormals, zeros of both signs and extremes included
    extremes = np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, -0.0], dtype=np.float32)
    vector = np.concatenate([values, extremes])
    text = vectors.encode_record({"request_id": "r", "features": {"x": 1.0, "v": vector}, "prediction": 1})
    back = np.asarray(json.loads(text)["features"]["v"], dtype=np.float64).astype(np.float32)
    nonzero = vector != 0
    np.testing.assert_array_equal(back[nonzero].view(np.uint32), vector[nonzero].view(np.uint32))
    np.testing.assert_array_equal(back, vector)  # -0.0 is written "-0", read back as 0 (equal)


def test_the_sender_text_is_the_record_json_dumps_would_write() -> None:
    vector = np.array([0.1, 1.0, -2.5e-8, np.nan, np.inf, -np.inf], dtype=np.float32)
    record: dict[str, Any] = {
        "request_id": "r",
        "features": {"x": 1.0, 'odd "name" é': vector, "s": torch.tensor(0.5), "list": [1.0, 2.0]},
        "prediction": 1,
        "embeddings": {"e": torch.arange(3, dtype=torch.int64)},
    }
    text = vectors.encode_record(record)
    assert '"odd \\"name\\" \\u00e9":[0.100000001,1,-2.50000003e-08,NaN,Infinity,-Infinity]' in text
    decoded = json.loads(text)
    assert decoded["features"]["x"] == 1.0
    assert decoded["features"]["s"] == 0.5
    assert decoded["features"]["list"] == [1.0, 2.0]
    assert decoded["embeddings"] == {"e": [0, 1, 2]}
    plain = {"request_id": "r", "features": {"x": 1.0, "c": "FR"}, "prediction": 1}
    assert vectors.encode_record(plain) == json.dumps(plain, separators=(",", ":"))


def test_a_sampled_out_request_keeps_no_reference_to_its_arrays() -> None:
    factory = helpers.GatedFactory(helpers.closed_address())
    logger = drift_logger.PredictionLogger(
        factory, "predictions", model_name="m", model_version="1", sample_rate=0.5, seed=0
    )
    try:
        refs = []
        for i in range(20):
            output = np.random.default_rng(i).normal(size=(4, 8))  # a batch's output
            refs.append(weakref.ref(output))
            with logger.request(features={"x": float(i)}, request_id=f"r{i}") as req:
                req.prediction = 1
                req.embeddings = {"e": output[0]}  # a view: it would keep the whole output alive
            del output, req
        gc.collect()
        logged = {record["request_id"] for record in helpers.queued_records(logger)}
        sampled_out = logger.stats().sampled_out
        assert 0 < sampled_out < 20
        alive = [f"r{i}" for i, ref in enumerate(refs) if ref() is not None]
        assert alive == sorted(logged, key=lambda rid: int(rid[1:]))  # only what waits to be sent
    finally:
        factory.open()
        logger.close(timeout_s=0.1)

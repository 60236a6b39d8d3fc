"""Vectors from the logger to a real broker (Tansu on loopback), read back by the agent's parser.

Each number on the wire stands for the float32 the agent will store: a float64 array is rounded
to float32 by the sender, which writes each float32 as the shortest text that reads back as it
(orjson, the `fast` extra) or with 9 significant digits (0.1 arrives as 0.100000001). Read back
as float32, the numbers are exactly the array's float32 values, and the parser's float32 bytes
equal the array's.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

import drift_logger
from agent.ingest import parsing, records
from demo import broker
from drift_logger import vectors as vectors_mod
from tests.support.logger import helpers

pytestmark = pytest.mark.integration


def make_logger(bootstrap: str, topic: str) -> drift_logger.PredictionLogger:
    return drift_logger.PredictionLogger(bootstrap, topic, model_name="text", model_version="3")


def test_vectors_arrive_as_float32_lists_the_agent_parses(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    rng = np.random.default_rng(7)
    numpy_vector = rng.normal(size=768)  # float64: rounded to float32 on the wire
    tensor = torch.from_numpy(rng.normal(size=768).astype(np.float32))
    half = torch.linspace(-1.0, 1.0, 5, dtype=torch.float16)
    logger = make_logger(bootstrap, topic_name)
    assert logger.log(
        "vec",
        {"amount": 3.5, "title": numpy_vector, "score": torch.tensor(0.25), "count": np.int64(4)},
        prediction=1,
        embeddings={"image": tensor, "small": half},
    )
    assert logger.close(timeout_s=30)

    ((obj, key),) = helpers.read_records(bootstrap, topic_name, 1)
    assert key == b"vec"
    title = np.asarray(obj["features"]["title"], dtype=np.float32)
    np.testing.assert_array_equal(title, numpy_vector.astype(np.float32))
    assert obj["features"]["title"][0] != numpy_vector[0]  # float32 rounding, as documented
    assert (obj["features"]["amount"], obj["features"]["score"], obj["features"]["count"]) == (3.5, 0.25, 4)
    np.testing.assert_array_equal(np.asarray(obj["embeddings"]["image"], dtype=np.float32), tensor.numpy())
    assert obj["embeddings"]["small"] == [-1.0, -0.5, 0.0, 0.5, 1.0]

    parsed = parsing.RecordParser().parse_prediction_obj(obj)
    assert isinstance(parsed, records.PredictionRecord)
    assert parsed.embeddings is not None
    assert parsed.embeddings["title"] == numpy_vector.astype("<f4").tobytes()
    assert parsed.embeddings["image"] == tensor.numpy().astype("<f4").tobytes()
    assert parsed.features == {"amount": 3.5, "score": 0.25, "count": 4}


@pytest.mark.parametrize("writer", ["orjson", "standard library"])
def test_only_the_sender_thread_converts_an_array(
    kafka_broker: broker.EmbeddedBroker, topic_name: str, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    if writer == "standard library":  # the logger without its `fast` extra
        monkeypatch.setattr(vectors_mod, "_orjson_module", None)
    # Every vector reaches the wire through _float32_array (to the host, as float32): record who
    # calls it.
    converted_on: list[threading.Thread] = []
    original = vectors_mod._float32_array

    def watched(value: Any) -> Any:
        converted_on.append(threading.current_thread())
        return original(value)

    monkeypatch.setattr(vectors_mod, "_float32_array", watched)
    bootstrap = kafka_broker.bootstrap_servers
    logger = make_logger(bootstrap, topic_name)
    vectors = [np.full(64, i + 0.1, dtype=np.float64) for i in range(20)]
    for i, vector in enumerate(vectors):
        with logger.request(features={"x": float(i)}, request_id=f"r{i}") as req:
            req.prediction = i % 2
            req.embeddings = {"e": vector}
    assert logger.close(timeout_s=30)

    assert len(converted_on) == 20
    assert all(thread is logger.sender_thread for thread in converted_on)
    found = {obj["request_id"]: obj for obj, _ in helpers.read_records(bootstrap, topic_name, 20)}
    written = np.asarray(found["r7"]["embeddings"]["e"], dtype=np.float32)
    np.testing.assert_array_equal(written, np.full(64, 7.1, dtype=np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_a_cuda_tensor_from_a_side_stream_is_written_after_the_kernels_that_made_it(
    kafka_broker: broker.EmbeddedBroker, topic_name: str
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    logger = make_logger(bootstrap, topic_name)
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    with torch.cuda.stream(side):
        state = torch.randn(4096, 4096, device="cuda")
        for _ in range(30):  # keeps the side stream busy well after log() has returned
            state = torch.tanh(state @ state)
        embedding = state[0, :768]
        assert logger.log("gpu", {"x": 1.0}, prediction=1, embeddings={"e": embedding})
    side.synchronize()
    expected = embedding.cpu().numpy()
    assert logger.close(timeout_s=60)

    ((obj, _),) = helpers.read_records(bootstrap, topic_name, 1)
    np.testing.assert_array_equal(np.asarray(obj["embeddings"]["e"], dtype=np.float32), expected)

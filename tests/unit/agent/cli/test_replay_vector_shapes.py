"""Replay holds the stream's vectors to the shapes the reference fixed, as the sidecar does."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from agent import replay
from agent import settings as settings_mod
from agent.ingest import records

DIM = 8


def line(i: int, **fields: Any) -> str:
    record = {
        "request_id": f"r{i}",
        "timestamp": 1_700_000_000 + i,
        "model_name": "search",
        "model_version": "1",
        "features": {"x": float(i % 5)},
        "prediction": i % 2,
        "embeddings": {"text_emb": [((i * 7 + k) % 11) / 11 for k in range(DIM)]},
    }
    return json.dumps(record | fields) + "\n"


def test_a_stream_record_of_another_dimension_is_rejected_with_its_reason(tmp_path: pathlib.Path) -> None:
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(line(i) for i in range(300)))
    stream = tmp_path / "stream.jsonl"
    wrong = line(1000, embeddings={"text_emb": [0.5] * (DIM - 1)})
    scalar = line(1001, features={"x": 1.0, "text_emb": 0.5}, embeddings={})
    stream.write_text("".join(line(i) for i in range(300, 500)) + wrong + scalar)
    events = tmp_path / "events.jsonl"
    settings = settings_mod.AgentSettings(window=settings_mod.WindowSettings(size=100))

    code = replay.run_replay(
        settings, reference_path=reference, stream=stream, labels=None, events_out=events
    )

    assert code == 0
    rejected = [
        json.loads(text) for text in events.with_name("events.jsonl.rejected.jsonl").read_text().splitlines()
    ]
    assert rejected == [
        {
            "record_index": 200,
            "reason": records.INVALID_VALUE,
            "detail": "field 'embeddings.text_emb': expected a vector of 8 numbers (its dimension in the "
            "reference), got 7",
        },
        {
            "record_index": 201,
            "reason": records.WRONG_TYPE,
            "detail": "field 'features.text_emb': expected a vector of 8 numbers (the reference has "
            "'text_emb' as a vector), got number 0.5",
        },
    ]
    # The valid records were windowed and judged.
    assert any(json.loads(text)["record_index"] >= 99 for text in events.read_text().splitlines())

"""Vector features from the reference to the windows: the schema's dimensions, the columns, the codec."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from agent import settings
from agent.ingest import parsing, records, vectors
from agent.pipeline import engine as engine_mod
from agent.pipeline import reference, reference_files, window_codec, windows
from agent.runtime import canary_sharing
from detectors import window as window_mod

DIM = 4


def rec(
    i: int, embeddings: dict[str, list[float]] | None = None, **features: Any
) -> records.PredictionRecord:
    return records.PredictionRecord(
        request_id=f"r-{i}",
        timestamp=float(i),
        model_name="search",
        model_version="v1",
        features={"x": float(i), **features},
        prediction=float(i % 2),
        embeddings=(
            {name: np.asarray(values, dtype="<f4").tobytes() for name, values in embeddings.items()}
            if embeddings is not None
            else None
        ),
    )


def emb(i: int, dim: int = DIM) -> list[float]:
    return [float(i) + k / 10 for k in range(dim)]


SCHEMA = reference.FeatureSchema(("x",), ("numeric",), (("text_emb", DIM),))


def test_schema_learns_each_vector_and_its_dimension_from_the_reference() -> None:
    schema = reference.FeatureSchema.infer(
        [rec(0, {"text_emb": emb(0)}), rec(1, {"text_emb": emb(1), "image_emb": [1.0, 2.0]})]
    )
    assert schema.names == ("x",)
    assert schema.vectors == (("text_emb", DIM), ("image_emb", 2))
    assert schema.vector_shapes == vectors.VectorShapes({"text_emb": DIM, "image_emb": 2}, frozenset({"x"}))


def test_schema_refuses_vector_names_that_clash_or_have_no_dimension() -> None:
    with pytest.raises(ValueError, match="vector names must be unique"):
        reference.FeatureSchema(("x",), ("numeric",), (("x", 3),))
    with pytest.raises(ValueError, match="dimension 0"):
        reference.FeatureSchema(("x",), ("numeric",), (("e", 0),))


def test_window_holds_each_vector_as_rows_by_dimension_float32() -> None:
    window = reference.to_window([rec(i, {"text_emb": emb(i)}) for i in range(3)], SCHEMA)
    matrix = window.vectors["text_emb"]
    assert matrix.dtype == np.float32 and matrix.shape == (3, DIM) and matrix.flags.writeable
    np.testing.assert_array_equal(matrix, np.asarray([emb(i) for i in range(3)], dtype=np.float32))
    assert window.size == 3
    assert window.fields is not None and not window.fields.absent and not window.fields.mistyped


def test_a_record_lacking_its_vector_or_of_another_dimension_is_a_nan_row_and_counted() -> None:
    stats = reference.ColumnStats()
    window = reference.to_window(
        [rec(0, {"text_emb": emb(0)}), rec(1), rec(2, {"text_emb": emb(2, dim=2), "new_emb": [1.0]})],
        SCHEMA,
        stats=stats,
    )
    matrix = window.vectors["text_emb"]
    np.testing.assert_array_equal(matrix[0], np.asarray(emb(0), dtype=np.float32))
    assert np.isnan(matrix[1]).all() and np.isnan(matrix[2]).all()
    assert window.fields is not None
    assert window.fields.absent == {"text_emb": 1}
    assert window.fields.mistyped == {"text_emb": 1}
    assert window.fields.unknown == {"new_emb": 1}
    assert (stats.type_mismatches, stats.unknown_features) == (1, 1)


def test_scalar_windows_carry_no_vectors() -> None:
    window = reference.to_window([rec(i) for i in range(3)], reference.FeatureSchema(("x",), ("numeric",)))
    assert dict(window.vectors) == {}


def test_window_manager_closes_windows_with_their_vectors() -> None:
    manager = windows.WindowManager(settings.WindowSettings(size=10), SCHEMA, clock=lambda: 0.0)
    closed = [window for i in range(20) for window in manager.add(rec(i, {"text_emb": emb(i)}), i)]
    assert [w.vectors["text_emb"].shape for w in closed] == [(10, DIM), (10, DIM)]
    np.testing.assert_array_equal(closed[1].vectors["text_emb"][0], np.asarray(emb(10), dtype=np.float32))
    joined = window_mod.concat(closed)
    assert joined.vectors["text_emb"].shape == (20, DIM)


def test_window_manager_state_keeps_buffered_vectors() -> None:
    manager = windows.WindowManager(settings.WindowSettings(size=10), SCHEMA, clock=lambda: 0.0)
    for i in range(9):
        manager.add(rec(i, {"text_emb": emb(i)}), i)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(manager.state()), type=windows.WindowsState)
    restored = windows.WindowManager(settings.WindowSettings(size=10), SCHEMA, clock=lambda: 0.0)
    restored.restore(state)
    (window,) = restored.add(rec(9, {"text_emb": emb(9)}), 9)
    np.testing.assert_array_equal(
        window.vectors["text_emb"], np.asarray([emb(i) for i in range(10)], np.float32)
    )


def test_window_codec_round_trips_vectors_and_nan_rows() -> None:
    window = reference.to_window([rec(0, {"text_emb": emb(0)}), rec(1)], SCHEMA)
    data = msgspec.msgpack.decode(
        msgspec.msgpack.encode(window_codec.encode(window)), type=window_codec.WindowData
    )
    back = window_codec.decode(data)
    np.testing.assert_array_equal(back.vectors["text_emb"], window.vectors["text_emb"])  # NaN == NaN here
    assert back.vectors["text_emb"].dtype == np.float32 and back.vectors["text_emb"].flags.writeable
    np.testing.assert_array_equal(back.features["x"], window.features["x"])


def test_the_windows_topic_carries_vectors_to_the_canary_feed() -> None:
    window = reference.to_window([rec(0, {"text_emb": emb(0)}), rec(1, {"text_emb": emb(1)})], SCHEMA)
    back, labelled = canary_sharing.decode_window(canary_sharing.encode_window(window, labelled=True))
    assert labelled
    np.testing.assert_array_equal(back.vectors["text_emb"], window.vectors["text_emb"])


def test_window_codec_reads_data_written_before_vectors_existed() -> None:
    window = reference.to_window([rec(0), rec(1)], reference.FeatureSchema(("x",), ("numeric",)))
    older = msgspec.structs.astuple(window_codec.encode(window))[:-1]  # without the vectors field
    back = window_codec.decode(
        msgspec.msgpack.decode(msgspec.msgpack.encode(older), type=window_codec.WindowData)
    )
    assert dict(back.vectors) == {} and back.size == 2


def test_window_codec_refuses_rows_that_do_not_split_by_the_dimension() -> None:
    data = window_codec.WindowData({}, {}, None, None, -1, None, {"e": window_codec.Matrix(3, b"\x00" * 8)})
    with pytest.raises(ValueError, match="do not split by dimension 3"):
        window_codec.decode(data)


# -- reference files ---------------------------------------------------------------------------------


def row(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": f"r-{i}",
        "timestamp": 1_700_000_000 + i,
        "model_name": "search",
        "model_version": "v1",
        "features": {"x": float(i)},
        "prediction": i % 2,
        **fields,
    }


def test_jsonl_reference_fixes_the_dimension_and_rejects_rows_that_disagree(tmp_path: pathlib.Path) -> None:
    lines = [row(0, embeddings={"text_emb": emb(0)}), row(1, features={"x": 1.0, "text_emb": emb(1)})]
    lines += [row(2, embeddings={"text_emb": emb(2, dim=3)}), row(3, features={"x": 3.0, "text_emb": 0.5})]
    path = tmp_path / "reference.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = reference_files.read_records(path, parsing.RecordParser())
    assert [r.request_id for r in loaded.records] == ["r-0", "r-1"]
    assert loaded.rejected == 2
    assert loaded.first_rejections[0] == (
        "row 3: invalid_value: field 'text_emb': expected a vector of 4 numbers (its dimension in the "
        "reference), got 3"
    )
    assert loaded.first_rejections[1].startswith(
        "row 4: wrong_type: field 'features.text_emb': expected a vector"
    )
    assert loaded.shapes == vectors.VectorShapes({"text_emb": DIM}, frozenset({"x"}))
    schema = reference.FeatureSchema.infer(loaded.records)
    assert schema.vectors == (("text_emb", DIM),)
    window = reference.to_window(loaded.records, schema)
    np.testing.assert_array_equal(window.vectors["text_emb"], np.asarray([emb(0), emb(1)], dtype=np.float32))


def test_csv_and_parquet_references_carry_vectors(tmp_path: pathlib.Path) -> None:
    frame = pd.DataFrame(
        {
            "request_id": ["r-0", "r-1"],
            "timestamp": [1_700_000_000, 1_700_000_001],
            "model_name": ["search", "search"],
            "model_version": ["v1", "v1"],
            "prediction": [0, 1],
            "features.x": [0.0, 1.0],
            "embeddings.text_emb": [json.dumps(emb(0)), json.dumps(emb(1))],
        }
    )
    frame.to_csv(tmp_path / "reference.csv", index=False)
    parquet = frame.assign(**{"embeddings.text_emb": [emb(0), emb(1)]})
    parquet.to_parquet(tmp_path / "reference.parquet")
    for name in ("reference.csv", "reference.parquet"):
        loaded = reference_files.read_records(tmp_path / name, parsing.RecordParser())
        assert loaded.rejected == 0, loaded.first_rejections
        assert loaded.shapes.dims == {"text_emb": DIM}
        window = reference.to_window(loaded.records, reference.FeatureSchema.infer(loaded.records))
        np.testing.assert_array_equal(window.vectors["text_emb"], np.asarray([emb(0), emb(1)], np.float32))


# -- the engine ----------------------------------------------------------------------------------------


def test_a_reference_collected_from_the_stream_keeps_its_vectors_through_the_engine_state() -> None:
    agent_settings = settings.AgentSettings(
        reference=settings.ReferenceSettings(first_n=20), window=settings.WindowSettings(size=10)
    )
    first = engine_mod.build(agent_settings, decide=None, clock=lambda: 0.0, reference_records=None)
    for i in range(25):  # 20 form the reference, 5 wait in the first window
        first.add_prediction(rec(i, {"text_emb": emb(i)}), i)
    assert first.reference_window is not None
    assert first.reference_window.vectors["text_emb"].shape == (20, DIM)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()), type=engine_mod.EngineState)

    second = engine_mod.build(agent_settings, decide=None, clock=lambda: 0.0, reference_records=None)
    second.restore(state)
    assert second.reference_window is not None
    np.testing.assert_array_equal(
        second.reference_window.vectors["text_emb"], first.reference_window.vectors["text_emb"]
    )
    # A record of another dimension reaches the windows only here (the shapes came after ingest).
    closed = [e.window for i in range(25, 30) for e in second.add_prediction(rec(i, {"text_emb": [1.0]}), i)]
    (window,) = closed
    assert np.isnan(window.vectors["text_emb"][5:]).all()
    assert window.fields is not None and window.fields.mistyped == {"text_emb": 5}

"""FeatureSchema inference, to_window columns, and reference loading from JSONL/CSV/Parquet."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent import settings
from agent.ingest import fragments, parsing, records
from agent.pipeline import reference, reference_files


def rec(i: int, features: dict[str, records.FeatureValue], **fields: Any) -> records.PredictionRecord:
    base: dict[str, Any] = {
        "request_id": f"r-{i}",
        "timestamp": 1000.0 + i,
        "model_name": "m",
        "model_version": "1",
        "features": features,
        "prediction": 0.5,
    }
    base.update(fields)
    return records.PredictionRecord(**base)


@pytest.fixture
def parser() -> parsing.RecordParser:
    return parsing.RecordParser(settings.FieldMappingSettings())


# -- schema ---------------------------------------------------------------------------------------


def test_schema_inference_orders_names_and_picks_kinds() -> None:
    schema = reference.FeatureSchema.infer(
        [
            rec(0, {"amount": 1.5, "flag": True, "country": "DE", "empty": None}),
            rec(1, {"amount": 2, "flag": False, "country": None, "late": 3.0, "mixed": 1}),
            rec(2, {"mixed": "x", "amount": None}),
        ]
    )
    assert schema.names == ("amount", "flag", "country", "empty", "late", "mixed")
    assert schema.kinds == ("numeric", "numeric", "categorical", "numeric", "numeric", "categorical")
    assert schema.kind_of("country") == "categorical" and schema.kind_of("nope") is None
    assert schema.numeric_names == ("amount", "flag", "empty", "late")


def test_schema_is_frozen_and_validated() -> None:
    schema = reference.FeatureSchema(("a",), ("numeric",))
    with pytest.raises(AttributeError):
        schema.names = ("b",)  # type: ignore[misc]
    with pytest.raises(ValueError, match="kind 'text'"):
        reference.FeatureSchema(("a",), ("text",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        reference.FeatureSchema(("a", "a"), ("numeric", "numeric"))


# -- to_window --------------------------------------------------------------------------------------


def test_to_window_dtypes_and_missing_values() -> None:
    schema = reference.FeatureSchema(("x", "flag", "colour"), ("numeric", "numeric", "categorical"))
    items = [
        rec(0, {"x": 1.5, "flag": True, "colour": "red"}, confidence=0.9, latency_ms=10.0, status="error"),
        rec(1, {"x": None, "flag": False, "colour": None}, latency_ms=12.0),
        rec(2, {"flag": True}, prediction=1.0),  # x and colour missing
        rec(3, {"x": 4, "flag": 1, "colour": 7, "extra": 1.0}),
    ]
    stats = reference.ColumnStats()
    window = reference.to_window(items, schema, last_record_index=42, stats=stats, model_version="1")
    x, flag, colour = window.features["x"], window.features["flag"], window.features["colour"]
    assert list(window.features) == ["x", "flag", "colour"]
    assert x.dtype == np.float64 and flag.dtype == np.float64 and colour.dtype == object
    assert x[0] == 1.5 and math.isnan(x[1]) and math.isnan(x[2]) and x[3] == 4.0
    assert list(flag) == [1.0, 0.0, 1.0, 1.0]
    assert list(colour) == ["red", None, None, "7"]
    assert window.predictions is not None and window.predictions.dtype == np.float64
    assert (
        window.confidences is not None and window.confidences[0] == 0.9 and math.isnan(window.confidences[1])
    )
    assert window.latency_ms is not None and list(window.latency_ms[:2]) == [10.0, 12.0]
    assert window.gpu_latency_ms is None  # no record had it
    assert window.errors is not None and list(window.errors) == [1.0, 0.0, 0.0, 0.0]
    assert window.timestamps is not None and list(window.timestamps) == [1000.0, 1001.0, 1002.0, 1003.0]
    assert window.labels is None
    assert (window.size, window.last_record_index, window.model_version) == (4, 42, "1")
    assert stats.unknown_features == 1
    assert all(column.flags["C_CONTIGUOUS"] for column in window.features.values())


def test_to_window_string_in_numeric_column_is_nan_and_counted() -> None:
    schema = reference.FeatureSchema(("x",), ("numeric",))
    stats = reference.ColumnStats()
    window = reference.to_window(
        [rec(0, {"x": "abc"}), rec(1, {"x": "2.5"}), rec(2, {"x": 3.0})], schema, stats=stats
    )
    column = window.features["x"]
    assert math.isnan(column[0]) and list(column[1:]) == [2.5, 3.0]
    assert stats.type_mismatches == 1


def test_to_window_non_finite_numbers_spelled_as_strings_are_nan_and_counted() -> None:
    schema = reference.FeatureSchema(("x", "y"), ("numeric", "numeric"))
    stats = reference.ColumnStats()
    items = [
        rec(0, {"x": "inf", "y": 1.0}),
        rec(1, {"x": "1e999", "y": "-Infinity"}),
        rec(2, {"x": "2.5", "y": 2.0}),
    ]
    window = reference.to_window(items, schema, stats=stats)
    assert np.isnan(window.features["x"][:2]).all() and window.features["x"][2] == 2.5
    assert np.isnan(window.features["y"][1]) and list(window.features["y"][[0, 2]]) == [1.0, 2.0]
    assert stats.type_mismatches == 3
    assert window.fields is not None and window.fields.mistyped == {"x": 2, "y": 1}


def test_to_window_string_predictions_and_labels() -> None:
    schema = reference.FeatureSchema(("x",), ("numeric",))
    items = [rec(0, {"x": 1.0}, prediction="cat"), rec(1, {"x": 2.0}, prediction="dog")]
    window = reference.to_window(items, schema, labels=["cat", None])
    assert window.predictions is not None and window.predictions.dtype == object
    assert list(window.predictions) == ["cat", "dog"]
    assert window.labels is not None and list(window.labels) == ["cat", None]


def test_to_window_of_no_records() -> None:
    schema = reference.FeatureSchema(("x", "c"), ("numeric", "categorical"))
    window = reference.to_window([], schema)
    assert window.size == 0 and window.features["x"].dtype == np.float64 and window.predictions is None


def through_a_fragment(items: list[records.PredictionRecord]) -> list[records.PredictionRecord]:
    """The records as the evaluate stage gets them: features as rows of shared layouts."""
    entries = [fragments.Entry(item, i, fragments.PREDICTIONS, 0, i) for i, item in enumerate(items)]
    fragment = fragments.Fragment(fragments.FORMAT, "m", entries, {}, "agent-0")
    decoded = [entry.record for entry in fragments.decode(fragments.encode(fragment)).entries]
    assert all(type(item.features) is records.FeatureRow for item in decoded)
    return decoded


@pytest.mark.parametrize(
    "names",
    [("x", "y", "c"), ("c", "x"), ("y",), ("x", "y", "c", "never_sent")],
    ids=["layout-order", "reordered", "one", "one-never-sent"],
)
def test_rows_decoded_from_a_fragment_make_the_same_window_as_dicts(names: tuple[str, ...]) -> None:
    feature_sets: list[dict[str, records.FeatureValue]] = [
        {"x": 1.0, "y": 2, "c": "red"},
        {"x": 2.0, "y": 3, "c": "blue"},
        {"y": 4, "c": "red", "x": 3.0},  # the same names in another order
        {"x": "abc", "y": True, "c": 3},  # a string where a number goes, a number where a category
        {"x": 5.0},  # lacking
        {"x": 6.0, "y": None, "c": "red", "unknown": 1.0},
    ]
    kinds: tuple[reference.Kind, ...] = tuple(
        reference.CATEGORICAL if name == "c" else reference.NUMERIC for name in names
    )
    schema = reference.FeatureSchema(names, kinds)
    items = [rec(i, features) for i, features in enumerate(feature_sets)]
    for subset in (items, items[:3]):  # mixed layouts, and the fast path of one layout
        by_dict, by_row = reference.ColumnStats(), reference.ColumnStats()
        expected = reference.to_window(subset, schema, stats=by_dict)
        got = reference.to_window(through_a_fragment(subset), schema, stats=by_row)
        assert list(got.features) == list(expected.features) == list(names)
        for name in names:
            np.testing.assert_array_equal(got.features[name], expected.features[name])
            assert got.features[name].dtype == expected.features[name].dtype
        assert got.fields == expected.fields
        assert (by_row.type_mismatches, by_row.unknown_features) == (
            by_dict.type_mismatches,
            by_dict.unknown_features,
        )


# -- collector ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "categorical"),
    [(("x", "y", "z"), ()), (("z", "x"), ()), (("y",), ()), (("x", "y", "z"), ("z",)), (("x", "w"), ())],
    ids=["layout-order", "reordered", "one", "a-float-category", "one-never-sent"],
)
def test_packed_rows_make_the_same_window_as_dicts(
    names: tuple[str, ...], categorical: tuple[str, ...]
) -> None:
    """Rows of floats only travel packed (format 3); the window read from the packed bytes is the
    window of the same records as dicts, whatever the schema asks of them."""
    feature_sets: list[dict[str, records.FeatureValue]] = [
        {"x": 1.5 + i, "y": -2.25 * i, "z": 1e-300 * i} for i in range(6)
    ]
    schema = reference.FeatureSchema(
        names, tuple(reference.CATEGORICAL if name in categorical else reference.NUMERIC for name in names)
    )
    items = [rec(i, features) for i, features in enumerate(feature_sets)]
    mixed = [*items[:3], rec(3, {"x": 4.5, "y": 1, "z": 0.5}), *items[4:]]  # one row with an int
    for subset in (items, mixed):
        rows = through_a_fragment(subset)
        packed = [
            type(item.features) is records.FeatureRow and item.features.packed is not None for item in rows
        ]
        assert packed == [item.features.get("y") != 1 for item in subset]
        # Read from the packed bytes only when every row is packed and has every numeric name.
        read_packed = reference._packed_matrix([item.features for item in rows], schema.numeric_names)
        assert (read_packed is not None) == (all(packed) and "w" not in names)
        by_dict, by_row = reference.ColumnStats(), reference.ColumnStats()
        expected = reference.to_window(subset, schema, stats=by_dict)
        got = reference.to_window(rows, schema, stats=by_row)
        for name in names:
            np.testing.assert_array_equal(got.features[name], expected.features[name])
            assert got.features[name].dtype == expected.features[name].dtype
            assert got.features[name].flags.c_contiguous
        assert got.fields == expected.fields
        assert (by_row.type_mismatches, by_row.unknown_features) == (
            by_dict.type_mismatches,
            by_dict.unknown_features,
        )


def test_reference_collector_keeps_the_first_n() -> None:
    collector = reference.ReferenceCollector(3)
    done = [collector.add(rec(i, {"x": float(i)})) for i in range(5)]
    assert done == [False, False, True, True, True]
    assert [r.request_id for r in collector.records()] == ["r-0", "r-1", "r-2"]
    assert collector.complete


# -- loading ----------------------------------------------------------------------------------------


def rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"r-{i}",
            "timestamp": 1_700_000_000 + i,
            "model_name": "m",
            "model_version": "2",
            "features": {"x": i * 0.5, "colour": "red" if i % 2 else "blue"},
            "prediction": float(i % 2),
            "latency_ms": 5.0 + i,
        }
        for i in range(n)
    ]


def check_loaded(loaded: list[records.PredictionRecord], n: int) -> None:
    assert [r.request_id for r in loaded] == [f"r-{i}" for i in range(n)]
    assert loaded[3].features == {"x": 1.5, "colour": "red"}
    assert loaded[3].timestamp == 1_700_000_003.0
    assert loaded[3].model_version == "2" and loaded[3].latency_ms == 8.0


def test_load_jsonl_skips_invalid_rows(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    path = tmp_path / "ref.jsonl"
    lines = [json.dumps(row) for row in rows(6)]
    lines.insert(2, '{"request_id": "bad"')
    lines.insert(4, "")
    path.write_text("\n".join(lines) + "\n")
    result = reference_files.read_records(path, parser)
    assert (result.rows, result.rejected, len(result.records)) == (7, 1, 6)
    assert result.first_rejections[0].startswith("row 3: malformed_json")
    check_loaded(reference_files.load_records(path, parser), 6)


def test_labels_in_reference_rows_are_read_and_an_invalid_one_rejects_its_row(
    tmp_path: pathlib.Path, parser: parsing.RecordParser
) -> None:
    labelled = rows(6)
    for i, row in enumerate(labelled):
        row["label"] = "yes" if i % 2 else 0
    del labelled[1]["label"]  # a row without its label: kept, its label missing
    labelled[4]["label"] = [1]  # not a label: the row is rejected, naming the field
    path = tmp_path / "ref.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in labelled))
    result = reference_files.load_labelled(path, parser)
    assert [r.request_id for r in result.records] == ["r-0", "r-1", "r-2", "r-3", "r-5"]
    assert result.labels == [0, None, 0, "yes", "yes"]
    assert result.rejected == 1 and "label" in result.first_rejections[0]
    # A CSV column named after the mapping's label path is read the same way.
    frame = flat_frame(4)
    frame["label"] = [1.0, 0.0, None, 1.0]
    frame.to_csv(tmp_path / "ref.csv", index=False)
    assert reference_files.load_labelled(tmp_path / "ref.csv", parser).labels == [1.0, 0.0, None, 1.0]
    # ... and the reference window carries them: a realised baseline for CBPE and concept detectors.
    loaded = reference_files.load_labelled(path, parser)
    schema = reference.FeatureSchema.infer(loaded.records)
    window = reference.to_window(loaded.records, schema, labels=loaded.labels)
    assert window.labels is not None and list(window.labels) == [0, None, 0, "yes", "yes"]


def test_load_json_array(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(rows(5)))
    check_loaded(reference_files.load_records(path, parser), 5)


def flat_frame(n: int) -> pd.DataFrame:
    flat = []
    for row in rows(n):
        features = row.pop("features")
        flat.append({**row, **{f"features.{name}": value for name, value in features.items()}})
    return pd.DataFrame(flat)


def test_load_csv_with_feature_columns(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    frame = flat_frame(5)
    frame.loc[4, "features.x"] = None  # an empty cell is a missing value, not NaN
    frame["segment.region"] = ["eu", "us", None, "eu", "eu"]
    path = tmp_path / "ref.csv"
    frame.to_csv(path, index=False)
    loaded = reference_files.load_records(path, parser)
    check_loaded(loaded, 5)
    assert loaded[4].features["x"] is None
    assert loaded[0].segment == {"region": "eu"} and loaded[2].segment is None


def test_load_csv_with_json_features_column(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    data = rows(5)
    frame = pd.DataFrame([{**row, "features": json.dumps(row["features"])} for row in data])
    path = tmp_path / "ref.csv"
    frame.to_csv(path, index=False)
    check_loaded(reference_files.load_records(path, parser), 5)


def test_load_parquet_with_feature_columns(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    path = tmp_path / "ref.parquet"
    flat_frame(5).to_parquet(path)
    check_loaded(reference_files.load_records(path, parser), 5)


def test_load_parquet_with_struct_features_and_datetime(
    tmp_path: pathlib.Path, parser: parsing.RecordParser
) -> None:
    frame = pd.DataFrame(rows(5))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    path = tmp_path / "ref.parquet"
    frame.to_parquet(path)
    check_loaded(reference_files.load_records(path, parser), 5)


def test_max_rows_keeps_a_seeded_uniform_sample_in_file_order(
    tmp_path: pathlib.Path, parser: parsing.RecordParser
) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows(400)))
    first = reference_files.load_records(path, parser, max_rows=50, seed=7)
    again = reference_files.load_records(path, parser, max_rows=50, seed=7)
    other = reference_files.load_records(path, parser, max_rows=50, seed=8)
    positions = [int(r.request_id[2:]) for r in first]
    assert len(first) == 50 and positions == sorted(positions)
    assert [r.request_id for r in again] == [r.request_id for r in first]
    assert [r.request_id for r in other] != [r.request_id for r in first]
    # Uniform over the file: both halves are represented.
    assert min(positions) < 100 and max(positions) > 300


def test_file_without_valid_rows_is_an_error(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_text('{"request_id": 1}\n')
    with pytest.raises(reference.ReferenceError, match=r"no valid record in 1 rows.*row 1: wrong_type"):
        reference_files.load_records(path, parser)


def test_unknown_suffix_and_missing_file(tmp_path: pathlib.Path, parser: parsing.RecordParser) -> None:
    with pytest.raises(
        reference.ReferenceError,
        match=r"unknown suffix '.txt'; use one of .jsonl, .json, .ndjson, .csv, .parquet, .pq",
    ):
        reference_files.load_records(tmp_path / "ref.txt", parser)
    with pytest.raises(reference.ReferenceError, match="cannot read reference file"):
        reference_files.load_records(tmp_path / "absent.jsonl", parser)
    with pytest.raises(reference.ReferenceError, match="cannot read reference file"):
        reference_files.load_records(tmp_path / "absent.parquet", parser)


def test_a_plain_feature_table_is_a_reference(parser: parsing.RecordParser) -> None:
    """The example shipped in config/: one column per feature, prediction, confidence and label."""
    example = pathlib.Path(__file__).parents[4] / "config" / "reference-example.csv"
    loaded = reference_files.load_labelled(example, parser)
    assert loaded.rejected == 0 and len(loaded.records) == 40
    first = loaded.records[0]
    assert sorted(first.features) == ["age", "income", "plan", "tenure_months"]
    assert first.request_id == "reference-0" and first.confidence is not None
    assert all(label in (0, 1) for label in loaded.labels)


def test_a_plain_feature_table_without_predictions_says_what_it_needs(
    tmp_path: pathlib.Path, parser: parsing.RecordParser
) -> None:
    path = tmp_path / "features.csv"
    path.write_text("age,income\n34,52000\n")
    with pytest.raises(
        reference.ReferenceError, match=r"needs a 'prediction' column .* columns found: age, income"
    ):
        reference_files.load_records(path, parser)

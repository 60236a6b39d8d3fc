"""RecordParser: the prediction-log and label contract, every rejection kind and its detail."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from agent import settings
from agent.ingest import parsing, records


def prediction(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "request_id": "r-1",
        "timestamp": 1_718_000_000.5,
        "model_name": "fraud",
        "model_version": "3",
        "features": {"amount": 12.5, "country": "DE", "is_new": True, "age": 41, "note": None},
        "prediction": 0.87,
    }
    record.update(overrides)
    return record


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def parser() -> parsing.RecordParser:
    return parsing.RecordParser(settings.FieldMappingSettings())


def accepted(result: records.PredictionRecord | records.Rejected) -> records.PredictionRecord:
    assert isinstance(result, records.PredictionRecord), result
    return result


def rejected(result: object) -> records.Rejected:
    assert isinstance(result, records.Rejected), result
    return result


def test_valid_record_keeps_every_field(parser: parsing.RecordParser) -> None:
    raw = encode(
        prediction(
            probabilities={"0": 0.13, "1": 0.87},
            latency_ms=12,
            gpu_latency_ms=3.25,
            status="error",
            segment={"region": "eu"},
        )
    )
    record = accepted(parser.parse_prediction(raw))
    assert record.request_id == "r-1"
    assert record.timestamp == 1_718_000_000.5
    assert (record.model_name, record.model_version) == ("fraud", "3")
    assert record.features == {"amount": 12.5, "country": "DE", "is_new": True, "age": 41, "note": None}
    assert record.prediction == 0.87
    assert record.probabilities == {"0": 0.13, "1": 0.87}
    assert record.latency_ms == 12.0 and isinstance(record.latency_ms, float)
    assert record.gpu_latency_ms == 3.25
    assert record.status == "error"
    assert record.segment == {"region": "eu"}
    assert record.extra is None


def test_optional_fields_default(parser: parsing.RecordParser) -> None:
    record = accepted(parser.parse_prediction(encode(prediction())))
    assert record.status == "ok"
    assert record.confidence is None and record.probabilities is None
    assert record.latency_ms is None and record.gpu_latency_ms is None and record.segment is None


def test_nulls_in_optional_fields_mean_absent(parser: parsing.RecordParser) -> None:
    raw = encode(prediction(latency_ms=None, status=None, segment=None, confidence=None, probabilities=None))
    record = accepted(parser.parse_prediction(raw))
    assert (record.latency_ms, record.status, record.segment, record.confidence) == (None, "ok", None, None)


def test_confidence_is_max_probability_when_absent(parser: parsing.RecordParser) -> None:
    record = accepted(
        parser.parse_prediction(encode(prediction(probabilities={"a": 0.2, "b": 0.5, "c": 0.3})))
    )
    assert record.confidence == 0.5


def test_explicit_confidence_wins_over_probabilities(parser: parsing.RecordParser) -> None:
    raw = encode(prediction(probabilities={"a": 0.2, "b": 0.8}, confidence=0.6))
    assert accepted(parser.parse_prediction(raw)).confidence == 0.6


def test_integer_model_version_becomes_string(parser: parsing.RecordParser) -> None:
    assert accepted(parser.parse_prediction(encode(prediction(model_version=7)))).model_version == "7"


def test_string_and_bool_predictions(parser: parsing.RecordParser) -> None:
    assert accepted(parser.parse_prediction(encode(prediction(prediction="cat")))).prediction == "cat"
    assert accepted(parser.parse_prediction(encode(prediction(prediction=True)))).prediction == 1.0
    assert accepted(parser.parse_prediction(encode(prediction(prediction=3)))).prediction == 3


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()),
        ("2024-05-01T14:00:00+02:00", datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()),
        (
            "2024-05-01t12:00:00.250z",
            datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp() + 0.25,
        ),
        ("2024-05-01 12:00:00Z", datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()),
        (1714564800, 1714564800.0),
        (1714564800.125, 1714564800.125),
    ],
)
def test_timestamps_rfc3339_and_epoch(parser: parsing.RecordParser, stamp: object, expected: float) -> None:
    record = accepted(parser.parse_prediction(encode(prediction(timestamp=stamp))))
    assert record.timestamp == pytest.approx(expected, abs=1e-6)
    assert isinstance(record.timestamp, float)


def test_unknown_top_level_fields_go_to_extra(parser: parsing.RecordParser) -> None:
    record = accepted(parser.parse_prediction(encode(prediction(trace_id="abc", host={"pod": "p-1"}))))
    assert record.extra == {"trace_id": "abc", "host": {"pod": "p-1"}}


# -- rejections: one test per reason, each checking the detail names the field ----------------------


@pytest.mark.parametrize(
    ("raw", "detail_part"),
    [
        (b'{"request_id": "r-1",', "not valid JSON"),
        (b"\xff\xfe{not utf-8", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_json(parser: parsing.RecordParser, raw: bytes, detail_part: str) -> None:
    result = rejected(parser.parse_prediction(raw))
    assert result.reason == records.MALFORMED_JSON
    assert detail_part in result.detail
    assert result.raw == raw


def test_latency_string_is_wrong_type_with_the_documented_detail(parser: parsing.RecordParser) -> None:
    result = rejected(parser.parse_prediction(encode(prediction(latency_ms="abc"))))
    assert result.reason == records.WRONG_TYPE
    assert result.detail == "field 'latency_ms': expected a finite number >= 0, got 'abc'"


@pytest.mark.parametrize(
    ("overrides", "reason", "detail"),
    [
        ({"latency_ms": True}, "wrong_type", "field 'latency_ms': expected a finite number >= 0, got True"),
        ({"latency_ms": -1}, "invalid_value", "field 'latency_ms': expected a finite number >= 0, got -1"),
        (
            {"gpu_latency_ms": [1]},
            "wrong_type",
            "field 'gpu_latency_ms': expected a finite number >= 0, got [1]",
        ),
        ({"timestamp": True}, "wrong_type", "field 'timestamp': expected epoch seconds"),
        ({"timestamp": "yesterday"}, "invalid_value", "field 'timestamp': expected epoch seconds"),
        ({"timestamp": "2024-05-01T12:00:00"}, "invalid_value", "with a UTC offset"),
        ({"timestamp": 1_714_564_800_000}, "invalid_value", "milliseconds? divide by 1000"),
        ({"timestamp": -5}, "invalid_value", "field 'timestamp'"),
        ({"request_id": 12}, "wrong_type", "field 'request_id': expected a non-empty string, got 12"),
        ({"request_id": ""}, "invalid_value", "field 'request_id': expected a non-empty string, got ''"),
        ({"model_name": {"a": 1}}, "wrong_type", "field 'model_name': expected a non-empty string"),
        ({"model_version": 1.5}, "wrong_type", "field 'model_version': expected a non-empty string, got 1.5"),
        ({"features": [1, 2]}, "wrong_type", "field 'features': expected an object"),
        (
            {"features": {"x": {"y": 1}}},
            "wrong_type",
            "field 'features.x': expected a number, string, bool or null, or a list of numbers",
        ),
        ({"features": {"x": [[1]]}}, "wrong_type", "field 'features.x[0]': expected a number"),
        ({"prediction": [0.1]}, "wrong_type", "field 'prediction': expected a number or a string, got [0.1]"),
        ({"probabilities": [0.1]}, "wrong_type", "field 'probabilities': expected an object"),
        ({"probabilities": {}}, "invalid_value", "field 'probabilities': expected at least one class"),
        (
            {"probabilities": {"a": 1.5}},
            "invalid_value",
            "field 'probabilities.a': expected a number in [0, 1]",
        ),
        ({"probabilities": {"a": "x"}}, "wrong_type", "field 'probabilities.a': expected a number in [0, 1]"),
        ({"confidence": 2}, "invalid_value", "field 'confidence': expected a number in [0, 1], got 2"),
        ({"confidence": False}, "wrong_type", "field 'confidence': expected a number in [0, 1], got False"),
        ({"status": "failed"}, "invalid_value", "field 'status': expected 'ok' or 'error', got 'failed'"),
        ({"status": 1}, "wrong_type", "field 'status': expected 'ok' or 'error', got 1"),
        ({"segment": {"region": 3}}, "wrong_type", "field 'segment.region': expected a string, got 3"),
        ({"segment": "eu"}, "wrong_type", "field 'segment': expected an object"),
    ],
)
def test_wrong_types_and_invalid_values(
    parser: parsing.RecordParser, overrides: dict[str, Any], reason: str, detail: str
) -> None:
    result = rejected(parser.parse_prediction(encode(prediction(**overrides))))
    assert result.reason == reason
    assert detail in result.detail


@pytest.mark.parametrize(
    "field", ["request_id", "timestamp", "model_name", "model_version", "features", "prediction"]
)
def test_missing_required_field(parser: parsing.RecordParser, field: str) -> None:
    obj = prediction()
    del obj[field]
    result = rejected(parser.parse_prediction(encode(obj)))
    assert result.reason == records.MISSING_FIELD
    assert result.detail.startswith(f"field '{field}': missing or null; it is required")
    assert f"mapping.{field}" in result.detail


def test_null_required_field_is_missing(parser: parsing.RecordParser) -> None:
    result = rejected(parser.parse_prediction(encode(prediction(prediction=None))))
    assert result.reason == records.MISSING_FIELD


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('"features": {"x": NaN}', "features.x"),
        ('"features": {"x": -Infinity}', "features.x"),
        ('"features": {"x": 1e400}', "features.x"),
        ('"features": {"x": 1}, "latency_ms": Infinity', "latency_ms"),
        ('"features": {"x": 1}, "prediction": NaN', "prediction"),
        ('"features": {"x": 1}, "confidence": NaN', "confidence"),
        ('"features": {"x": 1}, "timestamp": Infinity', "timestamp"),
        ('"features": {"x": 1}, "probabilities": {"a": NaN}', "probabilities.a"),
    ],
)
def test_non_finite_numbers(parser: parsing.RecordParser, text: str, field: str) -> None:
    base = '{"request_id": "r", "timestamp": 1.0, "model_name": "m", "model_version": "1", "prediction": 1'
    raw = (base + ", " + text + "}").encode()
    if '"prediction"' in text:
        raw = raw.replace(b'"prediction": 1, ', b"")
    if '"timestamp": Infinity' in text:
        raw = raw.replace(b'"timestamp": 1.0, ', b"")
    result = rejected(parser.parse_prediction(raw))
    assert result.reason == records.NON_FINITE, result.detail
    assert result.detail.startswith(f"field '{field}'")


def test_huge_integer_feature_is_non_finite(parser: parsing.RecordParser) -> None:
    result = rejected(parser.parse_prediction(encode(prediction(features={"x": 10**400}))))
    assert result.reason == records.NON_FINITE
    assert "features.x" in result.detail


def test_oversize(parser: parsing.RecordParser) -> None:
    small = parsing.RecordParser(settings.FieldMappingSettings(), max_bytes=100)
    raw = encode(prediction(features={f"f{i}": i for i in range(50)}))
    result = rejected(small.parse_prediction(raw))
    assert result.reason == records.OVERSIZE
    assert f"{len(raw)} bytes, over the limit of 100 bytes" in result.detail
    assert isinstance(parser.parse_prediction(raw), records.PredictionRecord)


def test_top_level_array_is_wrong_type(parser: parsing.RecordParser) -> None:
    result = rejected(parser.parse_prediction(b"[1, 2]"))
    assert (result.reason, result.detail) == ("wrong_type", "record: expected a JSON object, got array")


def test_every_reason_is_declared(parser: parsing.RecordParser) -> None:
    seen = {
        rejected(parser.parse_prediction(b"{")).reason,
        rejected(parser.parse_prediction(encode(prediction(latency_ms="x")))).reason,
        rejected(parser.parse_prediction(encode(prediction(features={"x": float("nan")})))).reason,
        rejected(parser.parse_prediction(b"{}")).reason,
        rejected(parsing.RecordParser(max_bytes=1).parse_prediction(b"{}")).reason,
        rejected(parser.parse_prediction(encode(prediction(status="x")))).reason,
    }
    # processing_error is the ingest worker's (a record that made the agent's code raise), never
    # the parser's: tests/unit/agent/ingest/test_fragments.py shows it.
    assert seen == set(records.REJECT_REASONS) - {records.PROCESSING_ERROR}


def test_bad_data_never_raises(parser: parsing.RecordParser) -> None:
    nasty: list[bytes] = [
        b"[" * 100_000,
        b"null",
        b"1e999",
        b'"text"',
        b'{"features": {"x": 1' + b"0" * 5000 + b"}}",
    ]
    for raw in nasty:
        assert isinstance(parser.parse_prediction(raw), records.Rejected)


# -- field mapping ---------------------------------------------------------------------------------


def test_dotted_paths_in_the_mapping() -> None:
    mapping = settings.FieldMappingSettings(
        request_id="meta.id",
        timestamp="meta.ts",
        model_version="model.version",
        model_name="model.name",
        features="inputs",
        prediction="outputs.score",
        latency_ms="timing.total_ms",
    )
    parser = parsing.RecordParser(mapping)
    obj = {
        "meta": {"id": "abc", "ts": "2024-05-01T12:00:00Z"},
        "model": {"name": "m", "version": 4},
        "inputs": {"x": 1.0},
        "outputs": {"score": 0.25},
        "timing": {"total_ms": 8},
        "pod": "p-1",
    }
    record = accepted(parser.parse_prediction(encode(obj)))
    assert (record.request_id, record.model_name, record.model_version) == ("abc", "m", "4")
    assert record.prediction == 0.25 and record.latency_ms == 8.0
    assert record.features == {"x": 1.0}
    assert record.extra == {"pod": "p-1"}

    del obj["meta"]["id"]  # type: ignore[attr-defined]
    result = rejected(parser.parse_prediction(encode(obj)))
    assert result.reason == records.MISSING_FIELD
    assert result.detail.startswith("field 'meta.id' (request_id): missing")
    obj["timing"] = {"total_ms": "slow"}
    obj["meta"] = {"id": "abc", "ts": 1.0}
    assert rejected(parser.parse_prediction(encode(obj))).detail.startswith(
        "field 'timing.total_ms' (latency_ms)"
    )


def test_renamed_top_level_fields() -> None:
    parser = parsing.RecordParser(settings.FieldMappingSettings(request_id="rid", features="x"))
    obj = prediction()
    obj["rid"] = obj.pop("request_id")
    obj["x"] = obj.pop("features")
    record = accepted(parser.parse_prediction(encode(obj)))
    assert record.request_id == "r-1" and record.features["amount"] == 12.5 and record.extra is None
    assert (
        "field 'x.amount[0]'"
        in rejected(parser.parse_prediction(encode({**obj, "x": {"amount": ["a"]}}))).detail
    )


def test_bad_mapping_path_is_rejected_at_start() -> None:
    with pytest.raises(ValueError, match=r"mapping.request_id: 'meta\.\.id' is not a field path"):
        parsing.RecordParser(settings.FieldMappingSettings(request_id="meta..id"))


def test_parse_prediction_obj_for_files_and_adapters(parser: parsing.RecordParser) -> None:
    assert accepted(parser.parse_prediction_obj(prediction())).request_id == "r-1"
    result = rejected(parser.parse_prediction_obj(prediction(latency_ms=float("nan"))))
    assert result.reason == records.NON_FINITE
    assert json.loads(result.raw)["request_id"] == "r-1"


# -- labels ------------------------------------------------------------------------------------------


def test_parse_label(parser: parsing.RecordParser) -> None:
    label = parser.parse_label(encode({"request_id": "r-1", "timestamp": "2024-05-01T12:00:00Z", "label": 1}))
    assert isinstance(label, records.LabelRecord)
    assert (label.request_id, label.label) == ("r-1", 1)
    assert label.timestamp == datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()
    text = parser.parse_label(encode({"request_id": "r-2", "timestamp": 5, "label": "fraud"}))
    assert isinstance(text, records.LabelRecord) and text.label == "fraud"
    flag = parser.parse_label(encode({"request_id": "r-3", "timestamp": 5, "label": False}))
    assert isinstance(flag, records.LabelRecord) and flag.label == 0.0


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b'{"request_id": "r", "timestamp": 1}', "missing_field", "field 'label': missing"),
        (b'{"request_id": "r", "timestamp": 1, "label": NaN}', "non_finite", "field 'label'"),
        (b'{"request_id": "r", "timestamp": 1, "label": [1]}', "wrong_type", "field 'label'"),
        (b'{"timestamp": 1, "label": 1}', "missing_field", "field 'request_id'"),
        (b'{"request_id": "r", "label": 1}', "missing_field", "field 'timestamp'"),
        (b"{oops", "malformed_json", "not valid JSON"),
        (b"[]", "wrong_type", "label record: expected a JSON object"),
    ],
)
def test_label_rejections(parser: parsing.RecordParser, raw: bytes, reason: str, detail: str) -> None:
    result = rejected(parser.parse_label(raw))
    assert result.reason == reason
    assert detail in result.detail
    assert result.raw == raw


def test_label_mapping_path() -> None:
    parser = parsing.RecordParser(settings.FieldMappingSettings(label="truth.value", request_id="rid"))
    label = parser.parse_label(encode({"rid": "r-9", "timestamp": 3, "truth": {"value": 2.5}}))
    assert isinstance(label, records.LabelRecord) and (label.request_id, label.label) == ("r-9", 2.5)

"""The parser's fast paths (msgspec's typed decode; orjson + inline checks) must agree with the
full checks on every input.

``parse_prediction`` takes the fast paths for usual records; ``parse_prediction_obj`` always runs
the full checks. Both are fed the same generated records, valid and invalid, field by field.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import msgspec
import orjson
import pytest

from agent import settings
from agent.ingest import parsing, records, typed_decode, vectors

NAN = float("nan")
INF = float("inf")
_ABSENT = object()

# Per field: the usual value first, then unusual or invalid ones. The JSON writer below emits
# NaN / Infinity tokens, which orjson refuses and the standard library reads.
VARIANTS: dict[str, list[Any]] = {
    "request_id": ["r-1", "", 12, None, _ABSENT, ["x"], "é-\u2603"],
    "timestamp": [
        1_718_000_000.25,
        1_718_000_000,
        0,
        0.0,
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        -5,
        -0.5,
        1e12,
        10**12,
        True,
        None,
        NAN,
        INF,
        _ABSENT,
    ],
    "model_name": ["fraud", "", None, 3, _ABSENT],
    "model_version": ["v1", 4, 2**40, 1.5, "", True, None, _ABSENT],
    "features": [
        {"a": 1.5, "b": "x", "c": True, "d": None, "e": 3},
        {},
        {"a": -0.0, "b": 1e308, "c": 10**18, "d": False},
        {"a": NAN},
        {"a": 1.0, "b": -INF},
        {"a": [1]},
        {"a": 1.0, "v": [0.5, -1, 2e38]},
        {"v": [1.0, NAN]},
        {"v": [1, True]},
        {"v": []},
        {"v": [1e39]},
        {"v": [1.0, 2.0, 3.0]},
        {"a": {"b": 1}},
        [1.0],
        "x",
        None,
        _ABSENT,
    ],
    "prediction": [0.5, 1, "cat", True, False, -0.0, None, NAN, INF, [1], {"a": 1}, _ABSENT],
    "probabilities": [
        _ABSENT,
        {"a": 0.2, "b": 0.8},
        {"a": 1, "b": 0},
        {"a": 0.0, "b": 1.0},
        {},
        {"a": 1.5},
        {"a": -0.1},
        {"a": "x"},
        {"a": True},
        {"a": NAN},
        [0.1],
        None,
    ],
    "confidence": [_ABSENT, 0.7, 1, 0, 1.0, 2, -0.5, False, None, "high", NAN],
    "latency_ms": [_ABSENT, 12.5, 12, 0, -0.0, -1, -0.5, True, "x", None, INF, [1]],
    "gpu_latency_ms": [_ABSENT, 3.25, 3, -2.0, False, "fast", None, NAN],
    "status": [_ABSENT, "ok", "error", "OK", "failed", 1, None, ["ok"], {"s": "ok"}],
    "segment": [_ABSENT, {"region": "eu"}, {}, {"region": 3}, {"region": None}, "eu", None, ["eu"]],
    "trace_id": [_ABSENT, "abc", {"nested": [1, 2]}],
    "embeddings": [_ABSENT, {"w": [0.25, 1]}, {"a": [1.0]}, {"w": []}, {"w": ["x"]}, {}, [1.0], None],
}


def generated(count: int, seed: int) -> list[dict[str, Any]]:
    """Records whose fields are usual most of the time, so that both paths are exercised."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        obj: dict[str, Any] = {}
        for field, values in VARIANTS.items():
            value = values[0] if rng.random() < 0.75 else rng.choice(values)
            if value is not _ABSENT:
                obj[field] = value
        made.append(obj)
    return made


def field_values(record: records.PredictionRecord) -> list[tuple[type, Any]]:
    # Types too: 12 == 12.0, but a record must carry a float latency, not an int. The features
    # may be a dict or a row (the typed tier's learned names): the same names and typed values.
    values = [getattr(record, field.name) for field in msgspec.structs.fields(record)]
    return [
        (Mapping, {name: (type(item), item) for name, item in value.items()})
        if isinstance(value, Mapping) and field == "features"
        else (type(value), value)
        for field, value in zip(record.__struct_fields__, values, strict=True)
    ]


@pytest.fixture
def parser() -> parsing.RecordParser:
    return parsing.RecordParser(settings.FieldMappingSettings())


# A reference with a 3-dimensional vector "v" and scalars "a", "b": records are held to it.
SHAPED = vectors.VectorShapes({"v": 3}, frozenset({"a", "b"}))


@pytest.mark.parametrize("shapes", [None, SHAPED], ids=["any-shape", "reference-shapes"])
def test_fast_path_agrees_with_full_checks(shapes: vectors.VectorShapes | None) -> None:
    parser = parsing.RecordParser(settings.FieldMappingSettings(), shapes=shapes)
    accepted = rejected = 0
    for obj in generated(3000, seed=11):
        raw = json.dumps(obj).encode()  # allow_nan: NaN / Infinity tokens on purpose
        fast = parser.parse_prediction(raw)
        full = parser.parse_prediction_obj(json.loads(raw))
        assert type(fast) is type(full), (obj, fast, full)
        if isinstance(fast, records.Rejected):
            assert isinstance(full, records.Rejected)
            assert (fast.reason, fast.detail) == (full.reason, full.detail), obj
            assert fast.raw == raw
            rejected += 1
        else:
            assert isinstance(full, records.PredictionRecord)
            assert field_values(fast) == field_values(full), obj
            accepted += 1
    # Both outcomes must be well represented, or the comparison proves little.
    assert accepted > 300 and rejected > 300, (accepted, rejected)


def usual_record() -> dict[str, Any]:
    return {
        "request_id": "r-1",
        "timestamp": 1_718_000_000,
        "model_name": "fraud",
        "model_version": "v1",
        "features": {"a": 1.5, "b": "x", "c": True, "d": None, "e": 3},
        "prediction": 1,
        "probabilities": {"0": 0.25, "1": 0.75},
        "latency_ms": 12,
        "gpu_latency_ms": 2.5,
        "status": "error",
        "segment": {"region": "eu"},
    }


def test_usual_record_takes_the_fast_path(parser: parsing.RecordParser) -> None:
    obj = {**usual_record(), "trace_id": "t-9"}
    record = parser._fast_prediction(orjson.loads(json.dumps(obj)))
    assert record is not None
    assert (record.timestamp, type(record.timestamp)) == (1_718_000_000.0, float)
    assert (record.latency_ms, type(record.latency_ms)) == (12.0, float)
    assert record.confidence == 0.75
    assert record.status == "error"
    assert record.extra == {"trace_id": "t-9"}


def test_usual_record_takes_the_typed_decode_and_an_unknown_field_leaves_it(
    parser: parsing.RecordParser,
) -> None:
    typed = typed_decode.prediction_decoder({name: name for name in parsing.PREDICTION_FIELDS})
    obj = usual_record()
    record = typed(json.dumps(obj).encode())
    assert record is not None
    full = parser.parse_prediction_obj(obj)
    assert isinstance(full, records.PredictionRecord)
    assert field_values(record) == field_values(full)
    assert record.confidence == 0.75 and (record.timestamp, type(record.timestamp)) == (
        1_718_000_000.0,
        float,
    )
    # An unknown top-level field is kept aside by the next tier (extra): the typed decode passes it on.
    assert typed(json.dumps({**obj, "trace_id": "t-9"}).encode()) is None
    # A renamed field under a flat mapping is read under its new name.
    mapped = parsing.RecordParser(settings.FieldMappingSettings(request_id="id"))
    renamed = {("id" if key == "request_id" else key): value for key, value in obj.items()}
    assert mapped._typed is not None and mapped._typed(json.dumps(renamed).encode()) is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "2024-05-01T12:00:00Z"),  # valid, but converted by the full checks
        ("model_version", 4),  # valid, converted to "4" by the full checks
        ("prediction", True),  # valid, read as 1.0 by the full checks
        ("probabilities", {"a": 1, "b": 0}),  # valid ints: the full checks convert
        ("confidence", 1),
        ("features", {"a": [1]}),
        ("status", "failed"),
        ("segment", {"region": 3}),
        ("latency_ms", -1),
    ],
)
def test_unusual_fields_leave_the_fast_path(parser: parsing.RecordParser, field: str, value: object) -> None:
    obj: dict[str, Any] = {
        "request_id": "r-1",
        "timestamp": 1_718_000_000.5,
        "model_name": "fraud",
        "model_version": "v1",
        "features": {"a": 1.5},
        "prediction": 0.5,
        field: value,
    }
    assert parser._fast_prediction(orjson.loads(json.dumps(obj))) is None


def test_orjson_refusals_are_judged_by_the_standard_library(parser: parsing.RecordParser) -> None:
    base = '{"request_id": %s, "timestamp": 1.0, "model_name": "m", "model_version": "1", '
    # A lone surrogate: orjson refuses it, the standard library decodes it, but it is no Unicode
    # text (alerts, /metrics and the audit log could not encode it): rejected, naming the field.
    raw = (base % '"\\ud800"' + '"features": {"x": 1}, "prediction": 1}').encode()
    lone = parser.parse_prediction(raw)
    assert isinstance(lone, records.Rejected) and lone.reason == records.MALFORMED_JSON
    assert "record.request_id holds a lone UTF-16 surrogate" in lone.detail
    # A surrogate pair is one character (an emoji): valid.
    pair = (base % '"\\ud83d\\ude00"' + '"features": {"x": 1}, "prediction": 1}').encode()
    record = parser.parse_prediction(pair)
    assert isinstance(record, records.PredictionRecord) and record.request_id == "\U0001f600"
    # UTF-16 with a BOM: the standard library detects the encoding, as it always did.
    utf16 = (base % '"r"' + '"features": {"x": 1}, "prediction": 1}').encode("utf-16")
    assert isinstance(parser.parse_prediction(utf16), records.PredictionRecord)
    # Invalid JSON keeps the standard library's message in the detail.
    broken = b'{"request_id": "r-1",'
    with pytest.raises(json.JSONDecodeError) as stdlib_error:
        json.loads(broken)
    result = parser.parse_prediction(broken)
    assert isinstance(result, records.Rejected)
    assert result.detail == f"not valid JSON: {stdlib_error.value}"


def test_labels_are_decoded_the_same_way(parser: parsing.RecordParser) -> None:
    nan = parser.parse_label(b'{"request_id": "r", "timestamp": 1, "label": NaN}')
    assert isinstance(nan, records.Rejected) and nan.reason == records.NON_FINITE
    label = parser.parse_label(b'{"request_id": "r", "timestamp": 1, "label": 2}')
    assert isinstance(label, records.LabelRecord) and label.label == 2


# -- learned feature names: rows instead of dicts ----------------------------------------------------


def with_features(features: dict[str, Any], request: int = 1) -> bytes:
    return json.dumps({**usual_record(), "request_id": f"r-{request}", "features": features}).encode()


def test_records_with_names_already_seen_come_as_rows_in_the_first_records_order(
    parser: parsing.RecordParser,
) -> None:
    first = parser.parse_prediction(with_features({"a": 1.5, "b": "x", "c": True, "d": None, "e": 3}))
    assert isinstance(first, records.PredictionRecord)
    assert type(first.features) is dict  # nothing learned yet
    # The same names in another order, other values and types: a row in the first record's order.
    reordered = with_features({"e": "y", "d": 2, "c": False, "b": 0.5, "a": None}, 2)
    second = parser.parse_prediction(reordered)
    assert isinstance(second, records.PredictionRecord)
    assert isinstance(second.features, records.FeatureRow)
    assert second.features.layout.names == ("a", "b", "c", "d", "e")
    assert second.features.ordered_values == (None, 0.5, False, 2, "y")
    assert [type(value) for value in second.features.ordered_values] == [type(None), float, bool, int, str]
    full = parser.parse_prediction_obj(json.loads(reordered))
    assert isinstance(full, records.PredictionRecord)
    assert field_values(second) == field_values(full)
    # One name fewer, or one more: a dict, as before.
    for features in (
        {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},
        {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6},
    ):
        other = parser.parse_prediction(with_features(features, 3))
        assert isinstance(other, records.PredictionRecord)
        assert type(other.features) is dict and other.features == features


def test_a_stream_of_changing_names_parses_as_a_fresh_parser_would() -> None:
    """Three models with their own names share the stream, names shuffled now and then, one
    missing or one more now and then: every record parsed by one long-lived parser (learning,
    switching, failing and forgetting) equals the same record parsed by a parser that has learned
    nothing."""
    rng = random.Random(5)
    name_sets = [[f"s{kind}_{index}" for index in range(rng.randint(1, 12))] for kind in range(3)]
    values: list[Any] = [0.25, -3, "cat", True, None, 1e300, 7]
    learning = parsing.RecordParser()
    rows = 0
    for _ in range(3000):
        kind = rng.randrange(3)
        names = list(name_sets[kind])
        if rng.random() < 0.3:
            rng.shuffle(names)
        if rng.random() < 0.05:
            names = names[1:]
        if rng.random() < 0.05:
            names.append(f"extra{rng.randrange(20)}")
        features = {name: rng.choice(values) for name in names}
        raw = json.dumps({**usual_record(), "model_name": f"m{kind}", "features": features}).encode()
        got = learning.parse_prediction(raw)
        fresh = parsing.RecordParser().parse_prediction(raw)
        assert isinstance(got, records.PredictionRecord) and isinstance(fresh, records.PredictionRecord)
        assert type(fresh.features) is dict
        assert field_values(got) == field_values(fresh), raw
        rows += isinstance(got.features, records.FeatureRow)
    assert rows > 2400, rows  # the learned names took most records, or the comparison proves little


def with_model(model: str, features: dict[str, Any]) -> bytes:
    return json.dumps({**usual_record(), "model_name": model, "features": features}).encode()


def test_learned_names_are_bounded_and_names_no_struct_can_carry_are_not_learned() -> None:
    layouts = typed_decode.LearnedLayouts({name: name for name in parsing.PREDICTION_FIELDS})
    for kind in range(typed_decode.MAX_LEARNED_LAYOUTS + 10):
        for _ in range(2):
            decoded = layouts.decode(with_model(f"m{kind}", {f"n{kind}": 1.0}))
            assert decoded is not None
    assert len(layouts) == typed_decode.MAX_LEARNED_LAYOUTS
    # Models whose names were learned get rows; those past the bound keep dicts.
    for kind in (0, typed_decode.MAX_LEARNED_LAYOUTS - 1, typed_decode.MAX_LEARNED_LAYOUTS):
        decoded = layouts.decode(with_model(f"m{kind}", {f"n{kind}": 2.0}))
        assert decoded is not None
        learned = kind < typed_decode.MAX_LEARNED_LAYOUTS
        assert isinstance(decoded[1], records.FeatureRow) is learned, kind
        assert dict(decoded[1]) == {f"n{kind}": 2.0}

    parser = parsing.RecordParser()
    for request in range(3):  # names msgspec cannot give a struct field: dicts, every time
        record = parser.parse_prediction(with_features({'say "hi"': 1.0, "back\\slash": 2.0}, request))
        assert isinstance(record, records.PredictionRecord)
        assert type(record.features) is dict
        assert record.features == {'say "hi"': 1.0, "back\\slash": 2.0}


def test_models_sharing_a_topic_each_keep_their_rows() -> None:
    layouts = typed_decode.LearnedLayouts({name: name for name in parsing.PREDICTION_FIELDS})
    kinds = []
    for request in range(20):
        model = "fraud" if request % 2 else "churn"
        decoded = layouts.decode(
            with_model(model, {f"{model}_{index}": float(request) for index in range(3)})
        )
        assert decoded is not None
        kinds.append(type(decoded[1]))
    assert kinds[:2] == [dict, dict] and set(kinds[2:]) == {records.FeatureRow}


def test_a_model_whose_names_keep_changing_goes_back_to_dicts_until_they_repeat() -> None:
    layouts = typed_decode.LearnedLayouts({name: name for name in parsing.PREDICTION_FIELDS})
    # A new name in every record: each set is learned until the bound, then each record fails the
    # model's learned names, and after MAX_MISSES failures in a row they are no longer tried.
    for request in range(typed_decode.MAX_LEARNED_LAYOUTS + typed_decode.MAX_MISSES):
        features = {"a": 1.0, f"x{request}": 2.0}
        decoded = layouts.decode(with_model("fraud", features))
        assert decoded is not None and type(decoded[1]) is dict and decoded[1] == features
    assert len(layouts) == typed_decode.MAX_LEARNED_LAYOUTS
    assert "fraud" not in layouts._by_model and layouts._last is None
    # Names learned before come again: the next record of them is a row.
    assert layouts.decode(with_model("fraud", {"a": 1.0, "x3": 2.0})) is not None
    decoded = layouts.decode(with_model("fraud", {"x3": 5.0, "a": 4.0}))
    assert decoded is not None and isinstance(decoded[1], records.FeatureRow)
    assert decoded[1].ordered_values == (4.0, 5.0)

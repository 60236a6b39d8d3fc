"""Vector features in the record contract: both spellings, their checks, and the reference's shapes."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import numpy as np
import pytest

from agent import settings
from agent.ingest import fragments, parsing, records, vectors

BASE: dict[str, Any] = {
    "request_id": "r-1",
    "timestamp": 1_718_000_000.5,
    "model_name": "search",
    "model_version": "v1",
    "features": {"a": 1.5},
    "prediction": 1,
}
# The reference: a 3-dimensional "text_emb", scalars "a" and "b".
SHAPES = vectors.VectorShapes({"text_emb": 3}, frozenset({"a", "b"}))


def both_tiers(
    parser: parsing.RecordParser, obj: dict[str, Any]
) -> list[records.PredictionRecord | records.Rejected]:
    """What the message path (typed decode first) and the decoded-object path make of ``obj``."""
    raw = json.dumps(obj).encode()  # allow_nan: NaN tokens on purpose
    return [parser.parse_prediction(raw), parser.parse_prediction_obj(json.loads(raw))]


def accepted_by_both(parser: parsing.RecordParser, obj: dict[str, Any]) -> records.PredictionRecord:
    first, second = both_tiers(parser, obj)
    assert isinstance(first, records.PredictionRecord), first
    assert first == second
    return first


def rejected_by_both(parser: parsing.RecordParser, obj: dict[str, Any]) -> records.Rejected:
    first, second = both_tiers(parser, obj)
    assert isinstance(first, records.Rejected), first
    assert isinstance(second, records.Rejected), second
    assert (first.reason, first.detail) == (second.reason, second.detail)
    return first


def vector(record: records.PredictionRecord, name: str) -> list[float]:
    assert record.embeddings is not None
    return [float(x) for x in vectors.as_array(record.embeddings[name])]


def test_a_list_under_features_is_a_vector_kept_as_float32_bytes() -> None:
    record = accepted_by_both(
        parsing.RecordParser(), BASE | {"features": {"a": 1.5, "text_emb": [1, 0.5, -2]}}
    )
    assert record.features == {"a": 1.5}
    assert record.embeddings is not None
    assert record.embeddings["text_emb"] == np.asarray([1, 0.5, -2], dtype="<f4").tobytes()
    assert vector(record, "text_emb") == [1.0, 0.5, -2.0]


def test_the_embeddings_object_holds_vectors_by_name() -> None:
    record = accepted_by_both(
        parsing.RecordParser(), BASE | {"embeddings": {"text_emb": [0.25, 4.0], "image_emb": [1.0]}}
    )
    assert record.features == {"a": 1.5} and record.extra is None
    assert vector(record, "text_emb") == [0.25, 4.0] and vector(record, "image_emb") == [1.0]


def test_records_without_vectors_keep_no_vector_state() -> None:
    record = accepted_by_both(parsing.RecordParser(), BASE | {"features": {"a": 1.5, "label": "[x]"}})
    assert record.embeddings is None
    assert accepted_by_both(parsing.RecordParser(), BASE | {"embeddings": {}}).embeddings is None


def test_a_768_dimension_vector_is_converted_exactly_to_float32() -> None:
    values = np.random.default_rng(3).normal(size=768)
    record = accepted_by_both(parsing.RecordParser(), BASE | {"embeddings": {"e": values.tolist()}})
    assert record.embeddings is not None
    np.testing.assert_array_equal(vectors.as_array(record.embeddings["e"]), values.astype(np.float32))


@pytest.mark.parametrize(
    ("obj", "reason", "detail"),
    [
        (
            {"features": {"a": 1.0, "text_emb": [1.0, 2.0]}, "embeddings": {"text_emb": [1.0, 2.0]}},
            records.INVALID_VALUE,
            "field 'embeddings.text_emb': 'text_emb' is also a feature under 'features'",
        ),
        (
            {"embeddings": {"a": [1.0]}},
            records.INVALID_VALUE,
            "field 'embeddings.a': 'a' is also a feature under 'features'",
        ),
        (
            {"features": {"text_emb": [0.5, "x", 1.0]}},
            records.WRONG_TYPE,
            "field 'features.text_emb[1]': expected a number (vectors hold numbers only), got string 'x'",
        ),
        (
            {"embeddings": {"e": [0.5, True]}},
            records.WRONG_TYPE,
            "field 'embeddings.e[1]': expected a number",
        ),
        (
            {"embeddings": {"e": [0.5, None]}},
            records.WRONG_TYPE,
            "field 'embeddings.e[1]': expected a number",
        ),
        ({"features": {"e": [[1.0]]}}, records.WRONG_TYPE, "field 'features.e[0]': expected a number"),
        (
            {"features": {"e": [1.0, math.nan]}},
            records.NON_FINITE,
            "field 'features.e[1]': expected a finite number",
        ),
        (
            {"embeddings": {"e": [-math.inf]}},
            records.NON_FINITE,
            "field 'embeddings.e[0]': expected a finite number",
        ),
        (
            {"embeddings": {"e": [1e39]}},
            records.INVALID_VALUE,
            "field 'embeddings.e[0]': expected a number within float32 range",
        ),
        (
            {"embeddings": {"e": [10**400]}},
            records.NON_FINITE,
            "field 'embeddings.e[0]': expected a finite number",
        ),
        (
            {"features": {"e": []}},
            records.INVALID_VALUE,
            "field 'features.e': expected a non-empty list of numbers",
        ),
        ({"embeddings": {"e": []}}, records.INVALID_VALUE, "field 'embeddings.e': expected a non-empty list"),
        (
            {"embeddings": {"e": "0.5,1"}},
            records.WRONG_TYPE,
            "field 'embeddings.e': expected a list of numbers",
        ),
        (
            {"embeddings": [[0.5]]},
            records.WRONG_TYPE,
            "field 'embeddings': expected an object of name -> list",
        ),
    ],
)
def test_bad_vectors_are_rejected_naming_the_element(obj: dict[str, Any], reason: str, detail: str) -> None:
    rejected = rejected_by_both(parsing.RecordParser(), BASE | obj)
    assert rejected.reason == reason
    assert rejected.detail.startswith(detail), rejected.detail


def test_a_vector_of_the_reference_dimension_is_accepted() -> None:
    parser = parsing.RecordParser(shapes=SHAPES)
    record = accepted_by_both(parser, BASE | {"features": {"a": 1.0, "text_emb": [1, 2, 3]}})
    assert vector(record, "text_emb") == [1.0, 2.0, 3.0]
    # A record may lack the vector (a NaN row in its window) or carry one the reference never had.
    assert accepted_by_both(parser, BASE).embeddings is None
    assert vector(accepted_by_both(parser, BASE | {"embeddings": {"new": [1.0]}}), "new") == [1.0]


@pytest.mark.parametrize(
    ("obj", "reason", "detail"),
    [
        (
            {"features": {"a": 1.0, "text_emb": [1.0, 2.0]}},
            records.INVALID_VALUE,
            "field 'features.text_emb': expected a vector of 3 numbers (its dimension in the "
            "reference), got 2",
        ),
        (
            {"embeddings": {"text_emb": [1.0, 2.0, 3.0, 4.0]}},
            records.INVALID_VALUE,
            "field 'embeddings.text_emb': expected a vector of 3 numbers (its dimension in the "
            "reference), got 4",
        ),
        (
            {"features": {"a": 1.0, "text_emb": 0.5}},
            records.WRONG_TYPE,
            "field 'features.text_emb': expected a vector of 3 numbers (the reference has 'text_emb' as a "
            "vector), got number 0.5",
        ),
        (
            {"features": {"a": 1.0}, "embeddings": {"b": [1.0]}},
            records.WRONG_TYPE,
            "field 'embeddings.b': expected a scalar (the reference has 'b' as a number, string, bool or "
            "null), got a vector of 1 numbers",
        ),
    ],
)
def test_shapes_other_than_the_reference_are_rejected(obj: dict[str, Any], reason: str, detail: str) -> None:
    rejected = rejected_by_both(parsing.RecordParser(shapes=SHAPES), BASE | obj)
    assert (rejected.reason, rejected.detail) == (reason, detail)


def test_with_shapes_keeps_the_mapping_and_the_size_limit() -> None:
    mapping = settings.FieldMappingSettings(features="inputs")
    shaped = parsing.RecordParser(mapping, 4096).with_shapes(SHAPES)
    assert (shaped.mapping, shaped.max_bytes, shaped.shapes) == (mapping, 4096, SHAPES)
    obj = {k: v for k, v in BASE.items() if k != "features"} | {"inputs": {"text_emb": [1.0]}}
    rejected = shaped.parse_prediction(json.dumps(obj).encode())
    assert isinstance(rejected, records.Rejected)
    assert rejected.detail.startswith("field 'inputs.text_emb': expected a vector of 3 numbers")


def test_a_nested_mapping_reads_vectors_too() -> None:
    parser = parsing.RecordParser(settings.FieldMappingSettings(features="body.inputs"))
    obj = {k: v for k, v in BASE.items() if k != "features"} | {"body": {"inputs": {"x": 1, "e": [0.5, 1]}}}
    record = parser.parse_prediction(json.dumps(obj).encode())
    assert isinstance(record, records.PredictionRecord)
    assert record.features == {"x": 1} and vector(record, "e") == [0.5, 1.0]
    bad = parser.parse_prediction(json.dumps(obj | {"body": {"inputs": {"e": [0.5, "y"]}}}).encode())
    assert isinstance(bad, records.Rejected) and bad.detail.startswith("field 'body.inputs.e[1]'")


def test_numpy_vectors_from_an_adapter_are_taken_and_bools_refused() -> None:
    parser = parsing.RecordParser()
    record = parser.parse_prediction_obj(BASE | {"features": {"a": 1.0, "e": np.arange(4, dtype=np.int64)}})
    assert isinstance(record, records.PredictionRecord) and vector(record, "e") == [0.0, 1.0, 2.0, 3.0]
    refused = parser.parse_prediction_obj(BASE | {"features": {"e": np.array([True, False])}})
    assert isinstance(refused, records.Rejected) and refused.reason == records.WRONG_TYPE
    assert refused.detail.startswith("field 'features.e': expected a non-empty 1-D array of numbers")


def test_records_with_vectors_survive_the_fragment_round_trip() -> None:
    record = accepted_by_both(parsing.RecordParser(), BASE | {"embeddings": {"e": [0.5, -1.0, 3.25]}})
    fragment = fragments.Fragment(
        fragments.FORMAT, "search", [fragments.Entry(record, 7, fragments.PREDICTIONS, 0, 7)], {0: 1.0}, "a"
    )
    back = fragments.decode(fragments.encode(fragment))
    assert back.entries[0].record == record
    assert vector(back.entries[0].record, "e") == [0.5, -1.0, 3.25]


def test_a_record_written_before_vectors_existed_still_decodes() -> None:
    record = accepted_by_both(parsing.RecordParser(), BASE)
    # An older agent's record: the same msgpack array without the trailing embeddings field.
    older = msgspec.msgpack.encode(msgspec.structs.astuple(record)[:-1])
    assert msgspec.msgpack.decode(older, type=records.PredictionRecord) == record


def test_shape_learner_fixes_the_first_dimension_and_refuses_others() -> None:
    parser = parsing.RecordParser()
    learner = vectors.ShapeLearner()
    first = accepted_by_both(parser, BASE | {"embeddings": {"e": [1.0, 2.0]}})
    other = accepted_by_both(parser, BASE | {"embeddings": {"e": [1.0, 2.0, 3.0]}})
    scalar = accepted_by_both(parser, BASE | {"features": {"a": 1.0, "e": 3.0}})
    assert learner.refusal(first, "features") is None
    wrong = learner.refusal(other, "features")
    assert (
        wrong is not None
        and wrong.reason == records.INVALID_VALUE
        and "expected a vector of 2" in wrong.detail
    )
    assert learner.refusal(scalar, "features") is not None
    assert learner.shapes() == vectors.VectorShapes({"e": 2}, frozenset({"a"}))

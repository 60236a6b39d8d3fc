"""Fuzz tests of ``RecordParser``: any input gives a record or a ``Rejected``, never an exception.

What is proved, on arbitrary bytes, arbitrary JSON documents (nested objects and arrays, numbers
beyond int64 and float64, NaN / Infinity tokens, lone surrogates escaped or raw, long strings)
and near-valid records (a valid record with one field replaced by any JSON value, or removed):

- ``parse_prediction`` / ``parse_label`` return a ``PredictionRecord`` / ``LabelRecord`` or a
  ``Rejected`` whose reason is one of ``records.REJECT_REASONS``, under a flat and a dotted
  field mapping;
- an accepted record keeps the contract: finite numbers only (features, prediction, latencies),
  a finite timestamp in the accepted range, probabilities and confidence in [0, 1];
- a valid record is accepted as it was written, and one over ``max_bytes`` is ``oversize``.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any, Final

import hypothesis
import numpy as np
from hypothesis import strategies as st

from agent import settings
from agent.ingest import parsing, records
from tests.unit.fuzz.common import (
    FUZZ,
    MAX_FLOAT,
    check_label,
    check_prediction,
    dumps,
    is_finite_number,
    is_unicode,
    json_values,
    json_values_long,
    texts,
)

FLAT: Final = parsing.RecordParser()
NESTED: Final = parsing.RecordParser(
    settings.FieldMappingSettings(
        request_id="meta.id", timestamp="meta.time", features="body.features", label="body.label"
    )
)
SMALL: Final = parsing.RecordParser(max_bytes=64)

# The contract's fields, as the parser knows them.
PREDICTION_FIELDS: Final = parsing.PREDICTION_FIELDS
LABEL_FIELDS: Final = parsing.LABEL_FIELDS


# -- the checks ---------------------------------------------------------------------------------


def check_all(raw: bytes) -> None:
    for parser in (FLAT, NESTED, SMALL):
        check_prediction(parser.parse_prediction(raw))
        check_label(parser.parse_label(raw))


# -- valid records ------------------------------------------------------------------------------

# Text a valid record carries is Unicode: no lone surrogate (records holding one are rejected).
unicode_texts: Final = texts.filter(is_unicode)
non_empty_texts: Final = st.text(min_size=1, max_size=12) | unicode_texts.filter(bool)
finite_floats: Final = st.floats(allow_nan=False, allow_infinity=False)
int64s: Final = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Integers beyond 64 bits are left to the mutations: orjson reads them as floats (parsing.py).
feature_values: Final = st.one_of(st.none(), st.booleans(), finite_floats, int64s, unicode_texts)
# Vector components: finite and within float32 (beyond it a vector is rejected, not rounded to inf).
float32s: Final = st.floats(min_value=-3.4e38, max_value=3.4e38) | st.integers(-(2**24), 2**24)
vector_values: Final = st.lists(float32s, min_size=1, max_size=8)
unit_floats: Final = st.floats(min_value=0.0, max_value=1.0)
_OFFSETS: Final = st.timedeltas(
    min_value=-datetime.timedelta(hours=23, minutes=59), max_value=datetime.timedelta(hours=23, minutes=59)
).map(lambda delta: datetime.timedelta(minutes=delta // datetime.timedelta(minutes=1)))
rfc3339_texts: Final = st.builds(
    lambda moment, offset, zulu: (
        moment.replace(tzinfo=datetime.UTC).isoformat().replace("+00:00", "Z")
        if zulu
        else moment.replace(tzinfo=datetime.timezone(offset)).isoformat()
    ),
    st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(5000, 1, 1)),
    _OFFSETS,
    st.booleans(),
)
timestamps: Final = st.one_of(
    st.floats(min_value=0.0, max_value=records.MAX_EPOCH_SECONDS, exclude_max=True),
    st.integers(min_value=0, max_value=int(records.MAX_EPOCH_SECONDS) - 1),
    rfc3339_texts,
)


@st.composite
def valid_predictions(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {
        "request_id": draw(non_empty_texts),
        "timestamp": draw(timestamps),
        "model_name": draw(non_empty_texts),
        "model_version": draw(non_empty_texts | int64s),
        "features": draw(st.dictionaries(unicode_texts, feature_values | vector_values, max_size=6)),
        "prediction": draw(finite_floats | int64s | unicode_texts),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "probabilities": st.dictionaries(unicode_texts, unit_floats, min_size=1, max_size=4),
        "confidence": unit_floats,
        "latency_ms": st.floats(min_value=0.0, max_value=1e9),
        "gpu_latency_ms": st.floats(min_value=0.0, max_value=1e9),
        "status": st.sampled_from(["ok", "error"]),
        "segment": st.dictionaries(unicode_texts, unicode_texts, max_size=3),
        # Vectors by name (a name also under ``features`` is dropped below: one namespace).
        "embeddings": st.dictionaries(unicode_texts, vector_values, max_size=3),
        # An unknown top-level field goes to ``extra``.
        "trace_id": json_values.filter(
            lambda v: is_unicode(json.dumps(v, ensure_ascii=False, allow_nan=True))
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    if "embeddings" in record:
        record["embeddings"] = {k: v for k, v in record["embeddings"].items() if k not in record["features"]}
    return record


@st.composite
def valid_labels(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "request_id": draw(non_empty_texts),
        "timestamp": draw(timestamps),
        "label": draw(finite_floats | int64s | unicode_texts | st.booleans()),
    }


_DELETE: Final = object()


@st.composite
def near_valid(
    draw: st.DrawFn, records_: st.SearchStrategy[dict[str, Any]], fields: tuple[str, ...]
) -> bytes:
    """A valid record with one field (top-level, or one feature / probability / segment value)
    replaced by an arbitrary JSON value, or removed."""
    record = copy.deepcopy(draw(records_))
    replacement = draw(st.just(_DELETE) | json_values_long)
    container: dict[str, Any] = record
    nested = [
        name
        for name in ("features", "probabilities", "segment", "embeddings")
        if isinstance(record.get(name), dict)
    ]
    inside = draw(st.booleans())
    if nested and inside:
        container = record[draw(st.sampled_from(nested))]
        key = draw(st.sampled_from(sorted(container)) | texts) if container else draw(texts)
    else:
        key = draw(st.sampled_from(fields))
    if replacement is _DELETE:
        container.pop(key, None)
    else:
        container[key] = replacement
    return dumps(record, ensure_ascii=draw(st.booleans()))


# -- the tests ----------------------------------------------------------------------------------


@hypothesis.settings(FUZZ, max_examples=300)
@hypothesis.given(raw=st.binary(max_size=200))
@hypothesis.example(raw=b"")
@hypothesis.example(raw=b"[" * 100_000)  # deeper than the recursion limit
@hypothesis.example(raw=b"[" * 5_000 + b"]" * 5_000)
@hypothesis.example(raw=b'{"a": "\xed\xa0\x80"}')  # a raw lone surrogate: not UTF-8
@hypothesis.example(raw=b'{"\xed\xa0\x80": null}')  # ... as a key: raised UnicodeDecodeError (fixed)
@hypothesis.example(raw=b"\xef\xbb\xbf{}")  # a UTF-8 byte-order mark
@hypothesis.example(raw=b'\x00{\x00"\x00a\x00"\x00:\x001\x00}')  # UTF-16
def test_arbitrary_bytes_give_a_record_or_a_rejection(raw: bytes) -> None:
    check_all(raw)


@hypothesis.settings(FUZZ, max_examples=200)
@hypothesis.given(document=json_values_long, ensure_ascii=st.booleans())
@hypothesis.example(document=float("nan"), ensure_ascii=True)
@hypothesis.example(document={"features": {"x": 10**400}}, ensure_ascii=True)
@hypothesis.example(document="\ud800", ensure_ascii=False)
# Raised UnicodeDecodeError out of msgspec before the fix in agent/ingest/typed_decode.py.
@hypothesis.example(document={"\ud800": None}, ensure_ascii=False)
def test_arbitrary_json_documents_give_a_record_or_a_rejection(document: Any, ensure_ascii: bool) -> None:
    check_all(dumps(document, ensure_ascii=ensure_ascii))


record_shaped: Final = st.fixed_dictionaries(
    {}, optional={name: json_values for name in (*PREDICTION_FIELDS, "embeddings", "label", "meta", "body")}
)


@hypothesis.settings(FUZZ, max_examples=200)
@hypothesis.given(document=record_shaped, ensure_ascii=st.booleans())
@hypothesis.example(
    document={"request_id": "r", "timestamp": 10**309, "label": 1, "features": {}}, ensure_ascii=True
)
@hypothesis.example(document={"timestamp": "0001-01-01T00:00:00+23:59", "request_id": "r"}, ensure_ascii=True)
def test_objects_with_the_contract_keys_and_any_values(document: dict[str, Any], ensure_ascii: bool) -> None:
    check_all(dumps(document, ensure_ascii=ensure_ascii))


@hypothesis.settings(FUZZ, max_examples=150)
@hypothesis.given(record=valid_predictions())
def test_valid_predictions_are_accepted_as_written(record: dict[str, Any]) -> None:
    raw = dumps(record)
    result = FLAT.parse_prediction(raw)
    assert isinstance(result, records.PredictionRecord), (result, raw)
    check_prediction(result)
    # As JSON reads them back: an escaped surrogate pair ("\ud800\udc00") is one character.
    written = json.loads(raw)
    assert result.request_id == written["request_id"]
    vectors = {name: value for name, value in written["features"].items() if isinstance(value, list)}
    vectors.update(written.get("embeddings") or {})
    assert result.features == {k: v for k, v in written["features"].items() if k not in vectors}
    assert {
        name: np.frombuffer(v, dtype="<f4").tolist() for name, v in (result.embeddings or {}).items()
    } == {name: np.asarray(value, dtype=np.float32).tolist() for name, value in vectors.items()}
    assert result.status == record.get("status", "ok")
    oversize = SMALL.parse_prediction(raw)
    if len(raw) > SMALL.max_bytes:
        assert isinstance(oversize, records.Rejected)
        assert oversize.reason == records.OVERSIZE
    else:
        assert oversize == result


@hypothesis.settings(FUZZ, max_examples=300)
@hypothesis.given(raw=near_valid(valid_predictions(), (*PREDICTION_FIELDS, "extra_field")))
@hypothesis.example(
    raw=b'{"request_id":"r","timestamp":1,"model_name":"m","model_version":"1",'
    b'"features":{},"prediction":1e400}'
)
@hypothesis.example(
    raw=b'{"request_id":"r","timestamp":1,"model_name":"m","model_version":"1",'
    b'"features":{},"prediction":0,"latency_ms":' + b"9" * 400 + b"}"
)
def test_near_valid_predictions_give_a_record_or_a_rejection(raw: bytes) -> None:
    check_all(raw)


@hypothesis.settings(FUZZ, max_examples=150)
@hypothesis.given(raw=near_valid(valid_labels(), LABEL_FIELDS))
def test_near_valid_labels_give_a_record_or_a_rejection(raw: bytes) -> None:
    check_all(raw)
    check_label(FLAT.parse_label(raw))


@hypothesis.settings(FUZZ, max_examples=100)
@hypothesis.given(record=valid_labels())
def test_valid_labels_are_accepted_as_written(record: dict[str, Any]) -> None:
    raw = dumps(record)
    result = FLAT.parse_label(raw)
    assert isinstance(result, records.LabelRecord), (result, record)
    check_label(result)
    written = json.loads(raw)
    assert result.request_id == written["request_id"]
    label = written["label"]
    if isinstance(label, bool):
        assert result.label == (1.0 if label else 0.0)
    else:
        assert result.label == label


def test_an_object_key_that_is_not_utf8_is_rejected_as_invalid_unicode() -> None:
    # Found by the fuzz tests: msgspec (the typed tier) raised UnicodeDecodeError on such a key.
    # The standard library reads it as a lone surrogate, which is no Unicode text: rejected, named.
    raw = (
        b'{"request_id": "r", "timestamp": 1, "model_name": "m", "model_version": "1", '
        b'"features": {}, "prediction": 1, "\xed\xa0\x80": null}'
    )
    result = FLAT.parse_prediction(raw)
    assert isinstance(result, records.Rejected), result
    assert (
        result.reason == records.MALFORMED_JSON
        and "record key holds a lone UTF-16 surrogate" in result.detail
    )


def test_the_finite_bound_is_float64s() -> None:
    # ``is_finite_number`` is what the checks above lean on: it must refuse what float64 cannot hold.
    assert is_finite_number(MAX_FLOAT)
    assert is_finite_number(int(MAX_FLOAT))
    assert not is_finite_number(10**309)
    assert not is_finite_number(float("nan"))
    assert not is_finite_number(float("inf"))

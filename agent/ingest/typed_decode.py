"""The first tier of prediction parsing: msgspec decodes the usual record into typed fields.

The contract's checks are written as types and constraints, checked by msgspec as it decodes
(one C-level pass, no intermediate dict): about 1.3 us for a 20-feature record against 3 us for
orjson plus the inline checks. Whatever the types do not take - a string timestamp, an unknown
top-level field, a bool where a number belongs, an integer beyond 64 bits, a number beyond
float64, NaN tokens - is a ``ValidationError`` or ``DecodeError``, and the record goes on to the
next tier (``RecordParser``: orjson and inline checks, then the full checks that name the field).
So this tier never accepts what the full checks reject, nor builds a different record
(tests/unit/agent/ingest/test_fast_path.py compares the tiers on every combination it generates).

Only for a flat field mapping (every contract field a top-level name): the struct's field names
are renamed to the mapping's keys.

Records of one model nearly always carry the same feature names. Once a set of names has been
decoded here, the next records are first decoded with a struct of exactly those names
(``LearnedLayouts``): msgspec stores each value in a slot (no dict, no key strings per record), and
the values come out in the layout's order as a ``records.FeatureRow``, the form the fragments carry.
At 200 features the record decodes in 8 us against 17 in a loop, and 18 against 38 when the
records are kept until they are published, as the ingest stage keeps them. A record whose names
differ (one missing, one more) fails that struct and is decoded with a dict, as before.

Vectors (a list under ``features``, the ``embeddings`` object) are taken by a second struct whose
feature values may also be lists of floats. A message goes to it only when its bytes hold a ``[``
(one ``memchr``): a record without a list never pays for the vector checks, and one with vectors
is decoded once, its lists checked by msgspec and converted by numpy (``vectors.split``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from agent.ingest import field_checks, records, vectors

Text = Annotated[str, msgspec.Meta(min_length=1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Milliseconds = Annotated[float, msgspec.Meta(ge=0.0)]
EpochSeconds = Annotated[float, msgspec.Meta(ge=0.0, lt=records.MAX_EPOCH_SECONDS)]
Vector = Annotated[list[float], msgspec.Meta(min_length=1)]
FeatureValue = float | Int64 | str | bool | None

_FIELDS: tuple[tuple[str, Any, Any], ...] = (
    ("request_id", Text, msgspec.NODEFAULT),
    ("timestamp", EpochSeconds, msgspec.NODEFAULT),
    ("model_name", Text, msgspec.NODEFAULT),
    ("model_version", Text, msgspec.NODEFAULT),
    ("features", dict[str, FeatureValue], msgspec.NODEFAULT),
    ("prediction", float | Int64 | str, msgspec.NODEFAULT),
    ("probabilities", Annotated[dict[str, Probability], msgspec.Meta(min_length=1)] | None, None),
    ("confidence", Probability | None, None),
    ("latency_ms", Milliseconds | None, None),
    ("gpu_latency_ms", Milliseconds | None, None),
    ("status", Literal["ok", "error"] | None, None),
    ("segment", dict[str, str] | None, None),
)
# The same fields, where a feature may be a vector and the embeddings object may come.
_VECTOR_FIELDS: tuple[tuple[str, Any, Any], ...] = (
    *(
        (name, dict[str, float | Int64 | str | bool | Vector | None], default)
        if name == "features"
        else (name, kind, default)
        for name, kind, default in _FIELDS
    ),
    (vectors.EMBEDDINGS_FIELD, dict[str, Vector] | None, None),
)

# An int, not b"[": ``bytes.__contains__`` tries its argument as an int first, and the failed try
# costs a bytes needle ~0.13 us a record; an int goes straight to memchr (~0.01 us on 700 bytes).
_OPEN_BRACKET = ord("[")

# msgspec raises UnicodeDecodeError (not DecodeError) for an object key that is not UTF-8 (a raw
# lone surrogate, b'{"\xed\xa0\x80": 1}'): the next tiers judge it, like any unusual record.
_FAILED = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)


# Sets of feature names a parser learns (each costs two structs and decoders, about 1 ms to build):
# records with ever-changing names stop teaching it once this many are known.
MAX_LEARNED_LAYOUTS: Final = 16
# A model whose records failed its learned names this many times in a row (its features come
# with names missing or added) is decoded with a dict again, until its names repeat.
MAX_MISSES: Final = 8


def _decoder(name: str, fields: tuple[tuple[str, Any, Any], ...], keys: Mapping[str, str]) -> Any:
    struct = msgspec.defstruct(
        name,
        list(fields),
        rename={field: keys.get(field, field) for field, _, _ in fields},
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(struct).decode


@dataclasses.dataclass(slots=True)
class _Learned:
    layout: records.FeatureLayout
    decode_record: Callable[[bytes], Any]  # a whole record whose features have exactly these names
    decode_features: Callable[[bytes], Any]  # the features object alone
    misses: int = 0


class LearnedLayouts:
    """The typed tier for records without vectors, learning each model's feature names.

    First the record is decoded in one pass with the names that came last (``decode``): a record of
    the same model with the same names comes out with its features as a ``records.FeatureRow``.
    Otherwise (another model, names missing or added: msgspec stops at the first unknown name) it
    is decoded with its features left as raw JSON, and they are decoded with the names learned for
    its model, or as a dict, whose names are then learned. Models that share a topic thus each keep
    their rows: a record costs a failed try and the second pass (about 13 us at 200 features,
    against 8.5 for the names that came last and 17 for a dict).
    """

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = keys
        self._decode_split = _decoder("SplitPrediction", _with_features(msgspec.Raw), keys)
        self._decode_dict = msgspec.json.Decoder(dict[str, FeatureValue]).decode
        # None: names no struct can carry (they count towards the bound, and are not tried again).
        self._known: dict[tuple[str, ...], _Learned | None] = {}
        self._by_model: dict[str, _Learned] = {}
        self._last: _Learned | None = None

    def __len__(self) -> int:
        return len(self._known)

    def decode(self, raw: bytes) -> tuple[Any, Mapping[str, Any]] | None:
        """The decoded fields and the features (a row, or a dict); None: not a usual record."""
        last = self._last
        if last is not None:
            try:
                got = last.decode_record(raw)
            except _FAILED:
                pass
            else:
                return got, records.FeatureRow(last.layout, msgspec.structs.astuple(got.features))
        try:
            got = self._decode_split(raw)
        except _FAILED:
            return None
        features = self._features(got.model_name, got.features)
        return None if features is None else (got, features)

    def _features(self, model: str, raw: msgspec.Raw) -> Mapping[str, Any] | None:
        learned = self._by_model.get(model)
        if learned is not None:
            try:
                values = msgspec.structs.astuple(learned.decode_features(raw))
            except _FAILED:
                learned.misses += 1
                if learned.misses >= MAX_MISSES:
                    del self._by_model[model]
                    self._last = None if self._last is learned else self._last
            else:
                learned.misses = 0
                self._last = learned
                return records.FeatureRow(learned.layout, values)
        try:
            features: dict[str, Any] = self._decode_dict(raw)
        except _FAILED:
            return None
        learned = self._learn(tuple(features))
        if learned is not None:
            learned.misses = 0
            self._by_model[model] = self._last = learned
        return features

    def _learn(self, names: tuple[str, ...]) -> _Learned | None:
        if names in self._known:
            return self._known[names]
        if not names or len(self._known) >= MAX_LEARNED_LAYOUTS:
            return None
        learned = self._known[names] = self._build(names)
        return learned

    def _build(self, names: tuple[str, ...]) -> _Learned | None:
        """Decoders for ``names``; None where msgspec cannot name a field so (a '"', a '\\' or a
        control character in a name): such records keep the dict."""
        # Slots named by position, renamed to the feature names: most strings can be a name.
        slots = [(f"f{position}", FeatureValue) for position in range(len(names))]
        try:
            features = msgspec.defstruct(
                "LearnedFeatures",
                slots,
                rename={slot: name for (slot, _), name in zip(slots, names, strict=True)},
                forbid_unknown_fields=True,
                gc=False,
            )
        except ValueError:
            return None
        return _Learned(
            records.FeatureLayout(names),
            _decoder("LearnedPrediction", _with_features(features), self._keys),
            msgspec.json.Decoder(features).decode,
        )


def _with_features(kind: Any) -> tuple[tuple[str, Any, Any], ...]:
    """The record's fields with ``features`` of type ``kind``."""
    return tuple((name, kind if name == "features" else other, default) for name, other, default in _FIELDS)


def prediction_decoder(
    keys: Mapping[str, str], shapes: vectors.VectorShapes | None = None
) -> Callable[[bytes], records.PredictionRecord | None]:
    """A decoder for records whose contract field ``name`` sits under ``keys[name]``; it returns
    None for anything unusual (the next tier decides). ``shapes``: the reference's vector shapes,
    which a record must agree with (else None: the next tier rejects it, naming the field)."""
    decode_vectors = _decoder("TypedVectorPrediction", _VECTOR_FIELDS, keys)
    layouts = LearnedLayouts(keys)
    features_path = keys["features"]
    # With vectors in the reference, every record is held to its shapes, lists or not (a scalar
    # where the reference has a vector); without, only a record that holds a list can disagree.
    expecting = shapes is not None and shapes.expects_vectors

    def typed(raw: bytes) -> records.PredictionRecord | None:
        if _OPEN_BRACKET in raw or expecting:
            try:
                got: Any = decode_vectors(raw)
            except _FAILED:
                return None
            return with_vectors(_record(got, got.features), got.embeddings)
        decoded = layouts.decode(raw)
        return None if decoded is None else _record(*decoded)

    def with_vectors(record: records.PredictionRecord, embeddings: Any) -> records.PredictionRecord | None:
        # Apart from ``typed``: a record without vectors pays one memchr and nothing else here.
        try:
            features, vectors_bytes = vectors.split(
                record.features, embeddings, features_path, shapes, floats=True
            )
        except field_checks.FieldError:
            return None
        return msgspec.structs.replace(record, features=features, embeddings=vectors_bytes)

    return typed


def _record(got: Any, features: Mapping[str, Any]) -> records.PredictionRecord:
    confidence = got.confidence
    if confidence is None and got.probabilities is not None:
        # Without an explicit confidence, the predicted class is the most probable one.
        confidence = max(got.probabilities.values())
    return records.PredictionRecord(
        got.request_id,
        got.timestamp,
        got.model_name,
        got.model_version,
        features,
        got.prediction,
        confidence,
        got.probabilities,
        got.latency_ms,
        got.gpu_latency_ms,
        got.status if got.status is not None else "ok",
        got.segment,
    )

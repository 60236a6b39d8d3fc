"""``RecordParser``: prediction-log and label messages checked against the contract in ``records``.

It turns one Kafka message (bytes) or one decoded object (files, adapters) into a
``records.PredictionRecord`` / ``records.LabelRecord``, or a ``records.Rejected`` that names the
field, what was expected and what came. Nothing here raises on bad data: the caller sends
``Rejected`` to the dead-letter topic and moves on.

Decoding is done by ``orjson`` (~5x faster than ``json`` on 670-byte records). What it refuses
is decoded again by the standard library, so NaN / Infinity tokens, numbers beyond float64 and
lone surrogates are judged by the same checks as before (``non_finite`` naming the field, or
``malformed_json`` with the standard library's message). One difference remains: integers
outside the 64-bit range, which ``orjson`` reads as floats.

Under a flat mapping a message first goes to ``typed_decode`` (msgspec decodes the usual record
straight into checked, typed fields); what it does not take is decoded by ``orjson`` and goes
through ``_fast_prediction``: the usual types, checked inline. Anything unusual there (a string
timestamp, an int probability, a bad value) falls through to the full checks: ``_prediction``
checks each field's usual type inline and hands anything else to ``field_checks``, which accepts
or rejects it and names the field.

Vector features (lists under ``features``, the ``embeddings`` object) are split from the scalar
features by ``vectors.split`` in the typed tier and the full checks (the orjson tier leaves them to
the full checks). A parser given the reference's ``VectorShapes`` (``with_shapes``) also refuses a
record whose vectors do not have the reference's shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from agent import settings
from agent.ingest import field_checks, records, typed_decode, vectors

DEFAULT_MAX_BYTES: Final = 1_048_576
_STATUSES: Final = ("ok", "error")  # a tuple: membership must not need a hashable value
# Value types the fast path takes without looking further. Only valid for orjson output: it never
# yields NaN, infinities or ints beyond 64 bits, so any int or float there is finite.
_PLAIN_FEATURE_TYPES: Final = frozenset({float, int, str, bool, type(None)})
_PLAIN_PREDICTION_TYPES: Final = frozenset({float, int, str})
_STRING_TYPE: Final = frozenset({str})

PREDICTION_FIELDS: Final = (
    "request_id",
    "timestamp",
    "model_name",
    "model_version",
    "features",
    "prediction",
    "probabilities",
    "confidence",
    "latency_ms",
    "gpu_latency_ms",
    "status",
    "segment",
)
LABEL_FIELDS: Final = ("request_id", "timestamp", "label")


def _lookup(obj: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = obj
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


class RecordParser:
    """Validates prediction-log and label records against the contract.

    One parser per mapping; it is stateless after construction and safe to share.
    """

    def __init__(
        self,
        mapping: settings.FieldMappingSettings | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        shapes: vectors.VectorShapes | None = None,
    ) -> None:
        """``shapes``: the vector shapes the reference fixed (None: any vector is taken as it comes)."""
        mapping = mapping if mapping is not None else settings.FieldMappingSettings()
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.mapping = mapping
        self.max_bytes = max_bytes
        paths = {name: str(getattr(mapping, name)) for name in (*PREDICTION_FIELDS, "label")}
        for name, path in paths.items():
            parts = tuple(path.split("."))
            if not path or any(not part for part in parts):
                raise ValueError(f"mapping.{name}: {path!r} is not a field path; use names joined by '.'")
        self._paths = {name: tuple(path.split(".")) for name, path in paths.items()}
        # The common case (every field a top-level name) reads the decoded dict directly; dotted
        # paths are first gathered into a dict keyed by contract name, then read the same way.
        self._flat_predictions = all(len(self._paths[name]) == 1 for name in PREDICTION_FIELDS)
        self._flat_labels = all(len(self._paths[name]) == 1 for name in LABEL_FIELDS)
        key = {name: (paths[name] if self._flat_predictions else name) for name in PREDICTION_FIELDS}
        # One tuple, unpacked once per record: cheaper than twelve attribute loads.
        self._keys = tuple(key[name] for name in PREDICTION_FIELDS)
        label_key = {name: (paths[name] if self._flat_labels else name) for name in LABEL_FIELDS}
        self._kl_request_id = label_key["request_id"]
        self._kl_timestamp = label_key["timestamp"]
        self._kl_label = label_key["label"]
        self._known_top = frozenset(
            (*(self._paths[name][0] for name in PREDICTION_FIELDS), vectors.EMBEDDINGS_FIELD)
        )
        self.shapes = shapes
        # Vector names of the reference: a record without a list can still disagree (a scalar there).
        self._vector_names = frozenset(shapes.dims) if shapes is not None else frozenset()
        self._features_path = paths["features"]
        self._typed = typed_decode.prediction_decoder(paths, shapes) if self._flat_predictions else None
        shown = {name: f"'{path}'" if path == name else f"'{path}' ({name})" for name, path in paths.items()}
        self._check = field_checks.FieldChecks(shown, paths["features"])

    def with_shapes(self, shapes: vectors.VectorShapes) -> RecordParser:
        """A parser like this one that also holds records to the reference's vector shapes."""
        return RecordParser(self.mapping, self.max_bytes, shapes=shapes)

    # -- entry points ---------------------------------------------------------------------------

    def parse_prediction(self, raw: bytes) -> records.PredictionRecord | records.Rejected:
        """One Kafka message -> a record, or ``Rejected`` naming the field and the fix."""
        if len(raw) > self.max_bytes:
            return self._oversize(raw)
        typed = self._typed(raw) if self._typed is not None else None
        return typed if typed is not None else self._parse_untyped(raw)

    def _parse_untyped(self, raw: bytes) -> records.PredictionRecord | records.Rejected:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                obj = _lenient_loads(raw)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                return records.Rejected(records.MALFORMED_JSON, f"not valid JSON: {exc}", bytes(raw))
        else:
            if type(obj) is dict and self._flat_predictions:
                record = self._fast_prediction(obj)
                if record is not None:
                    return record
        if type(obj) is not dict:
            return records.Rejected(
                records.WRONG_TYPE,
                f"record: expected a JSON object, got {field_checks.type_name(obj)}",
                bytes(raw),
            )
        try:
            return self._prediction(obj)
        except field_checks.FieldError as exc:
            return records.Rejected(exc.reason, exc.detail, bytes(raw))

    def parse_prediction_obj(self, obj: Mapping[str, Any]) -> records.PredictionRecord | records.Rejected:
        """An already-decoded object (a file row, an adapter) -> a record or ``Rejected``."""
        if not isinstance(obj, Mapping):
            return records.Rejected(
                records.WRONG_TYPE,
                f"record: expected an object, got {field_checks.type_name(obj)}",
                _dump(obj),
            )
        try:
            return self._prediction(obj)
        except field_checks.FieldError as exc:
            return records.Rejected(exc.reason, exc.detail, _dump(obj))

    def parse_label(self, raw: bytes) -> records.LabelRecord | records.Rejected:
        """One label message -> a ``LabelRecord`` or ``Rejected``."""
        if len(raw) > self.max_bytes:
            return self._oversize(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                obj = _lenient_loads(raw)
            except (ValueError, RecursionError) as exc:
                return records.Rejected(records.MALFORMED_JSON, f"not valid JSON: {exc}", bytes(raw))
        if type(obj) is not dict:
            return records.Rejected(
                records.WRONG_TYPE,
                f"label record: expected a JSON object, got {field_checks.type_name(obj)}",
                bytes(raw),
            )
        return self.parse_label_obj(obj, raw=bytes(raw))

    def parse_label_obj(
        self, obj: Mapping[str, Any], *, raw: bytes | None = None
    ) -> records.LabelRecord | records.Rejected:
        """An already-decoded label object -> a ``LabelRecord`` or ``Rejected``."""
        try:
            if not isinstance(obj, Mapping):
                raise field_checks.FieldError(
                    records.WRONG_TYPE, f"label record: expected an object, got {field_checks.type_name(obj)}"
                )
            src = obj if self._flat_labels else self._gather(obj, LABEL_FIELDS)
            request_id = self._check.non_empty_string("request_id", src.get(self._kl_request_id))
            timestamp = self._check.timestamp(src.get(self._kl_timestamp))
            label = self._check.label(src.get(self._kl_label))
        except field_checks.FieldError as exc:
            return records.Rejected(exc.reason, exc.detail, raw if raw is not None else _dump(obj))
        return records.LabelRecord(request_id, timestamp, label)

    def reference_label(self, row: bytes | Mapping[str, Any]) -> float | str | records.Rejected | None:
        """The label a reference row carries at the mapping's ``label`` path (None: it has none).

        Reference rows are prediction records; one that also carries its ground truth gives the
        reference a realised performance (CBPE's baseline, the labelled reference).
        """
        obj: Any = row
        if isinstance(row, bytes):
            try:
                obj = orjson.loads(row)
            except orjson.JSONDecodeError:
                return None  # the record itself was readable only leniently: no label taken from it
        value = _lookup(obj, self._paths["label"]) if isinstance(obj, Mapping) else None
        if value is None:
            return None
        try:
            return self._check.label(value)
        except field_checks.FieldError as exc:
            return records.Rejected(exc.reason, exc.detail, _dump(obj))

    # -- prediction ---------------------------------------------------------------------------

    def _fast_prediction(self, obj: dict[str, Any]) -> records.PredictionRecord | None:  # noqa: PLR0912
        """The usual record, checked inline; None when anything is unusual (``_prediction`` decides).

        Only for ``orjson`` output under a flat mapping (see ``_PLAIN_FEATURE_TYPES``). It must
        never accept what ``_prediction`` rejects, nor build a record that differs from its.
        One flat function on purpose: no helper calls, no exceptions, one C-level pass over the
        features (~2.7 us against ~4.1 us for the full checks on a 20-feature record).
        """
        (
            k_request_id,
            k_timestamp,
            k_model_name,
            k_model_version,
            k_features,
            k_prediction,
            k_probabilities,
            k_confidence,
            k_latency,
            k_gpu_latency,
            k_status,
            k_segment,
        ) = self._keys
        get: Callable[[str], Any] = obj.get
        request_id = get(k_request_id)
        model_name = get(k_model_name)
        model_version = get(k_model_version)
        features = get(k_features)
        prediction = get(k_prediction)
        timestamp = get(k_timestamp)
        if type(timestamp) is int:
            timestamp = float(timestamp)
        latency_ms = get(k_latency)
        if type(latency_ms) is int:
            latency_ms = float(latency_ms)
        gpu_latency_ms = get(k_gpu_latency)
        if type(gpu_latency_ms) is int:
            gpu_latency_ms = float(gpu_latency_ms)
        status = get(k_status)
        if status is None:
            status = "ok"
        segment = get(k_segment)
        if (
            type(request_id) is not str
            or type(model_name) is not str
            or type(model_version) is not str
            or not request_id
            or not model_name
            or not model_version
            or type(timestamp) is not float
            or not 0.0 <= timestamp < records.MAX_EPOCH_SECONDS
            or type(prediction) not in _PLAIN_PREDICTION_TYPES
            or type(features) is not dict
            or not _PLAIN_FEATURE_TYPES.issuperset(map(type, features.values()))
            or (latency_ms is not None and (type(latency_ms) is not float or latency_ms < 0.0))
            or (gpu_latency_ms is not None and (type(gpu_latency_ms) is not float or gpu_latency_ms < 0.0))
            or (status != "ok" and status != "error")  # noqa: PLR1714 - `in` would hash an odd value
            or (
                segment is not None
                and (type(segment) is not dict or not _STRING_TYPE.issuperset(map(type, segment.values())))
            )
        ):
            return None
        if get(vectors.EMBEDDINGS_FIELD) is not None or not self._vector_names.isdisjoint(features):
            return None  # vectors, or a scalar where the reference has one: the full checks decide
        probabilities = get(k_probabilities)
        confidence = get(k_confidence)
        if probabilities is not None:
            if type(probabilities) is not dict or not probabilities:
                return None
            top = -1.0
            for probability in probabilities.values():
                if type(probability) is not float or not 0.0 <= probability <= 1.0:
                    return None
                if probability > top:  # noqa: PLR1730 - max() is a call, slower here
                    top = probability
            if confidence is None:
                # Without an explicit confidence, the predicted class is the most probable one.
                confidence = top
        if confidence is not None and (type(confidence) is not float or not 0.0 <= confidence <= 1.0):
            return None
        extra = None
        if not self._known_top.issuperset(obj):
            extra = {key: value for key, value in obj.items() if key not in self._known_top}
        return records.PredictionRecord(
            request_id,
            timestamp,
            model_name,
            model_version,
            features,
            prediction,
            confidence,
            probabilities,
            latency_ms,
            gpu_latency_ms,
            status,
            segment,
            extra,
        )

    def _prediction(self, obj: Mapping[str, Any]) -> records.PredictionRecord:
        # The full checks: any decoded object, any mapping. Each field gets an inline check for
        # its usual type and falls back to a helper (which converts or raises) for anything else.
        src = obj if self._flat_predictions else self._gather(obj, PREDICTION_FIELDS)
        get: Callable[[str], Any] = src.get
        (
            k_request_id,
            k_timestamp,
            k_model_name,
            k_model_version,
            k_features,
            k_prediction,
            k_probabilities,
            k_confidence,
            k_latency,
            k_gpu_latency,
            k_status,
            k_segment,
        ) = self._keys

        request_id = get(k_request_id)
        if type(request_id) is not str or not request_id:
            request_id = self._check.non_empty_string("request_id", request_id)
        timestamp = get(k_timestamp)
        if type(timestamp) is not float or not 0.0 <= timestamp < records.MAX_EPOCH_SECONDS:
            timestamp = self._check.timestamp(timestamp)
        model_name = get(k_model_name)
        if type(model_name) is not str or not model_name:
            model_name = self._check.non_empty_string("model_name", model_name)
        model_version = get(k_model_version)
        if type(model_version) is not str or not model_version:
            model_version = self._check.model_version(model_version)
        features, embeddings = self._features(get(k_features), obj.get(vectors.EMBEDDINGS_FIELD))
        prediction = get(k_prediction)
        if type(prediction) is not str and (type(prediction) is not float or prediction - prediction != 0.0):
            prediction = self._check.prediction(prediction)
        probabilities = get(k_probabilities)
        confidence = get(k_confidence)
        if probabilities is not None or confidence is not None:
            probabilities, confidence = self._check.confidence(probabilities, confidence)
        latency_ms = get(k_latency)
        if latency_ms is not None and (
            type(latency_ms) is not float or not 0.0 <= latency_ms <= field_checks.MAX_FLOAT
        ):
            latency_ms = self._check.non_negative("latency_ms", latency_ms)
        gpu_latency_ms = get(k_gpu_latency)
        if gpu_latency_ms is not None and (
            type(gpu_latency_ms) is not float or not 0.0 <= gpu_latency_ms <= field_checks.MAX_FLOAT
        ):
            gpu_latency_ms = self._check.non_negative("gpu_latency_ms", gpu_latency_ms)
        status = get(k_status)
        if status is None:
            status = "ok"
        elif status not in _STATUSES:
            status = self._check.status(status)
        segment = get(k_segment)
        if segment is not None:
            self._check.segment(segment)
        extra = None
        if not self._known_top.issuperset(obj):
            extra = {key: value for key, value in obj.items() if key not in self._known_top}
        return records.PredictionRecord(
            request_id,
            timestamp,
            model_name,
            model_version,
            features,
            prediction,
            confidence,
            probabilities,
            latency_ms,
            gpu_latency_ms,
            status,
            segment,
            extra,
            embeddings,
        )

    def _features(
        self, features: Any, embeddings: object
    ) -> tuple[Mapping[str, Any], dict[str, bytes] | None]:
        """The scalar features, and the vectors (None without any), checked."""
        if type(features) is not dict:
            features = self._check.features_object(features)
        checked: dict[str, Any] = features
        listed = False
        for value in checked.values():
            kind = type(value)
            if kind is float:
                if value - value:  # NaN or +-Infinity (finite floats give 0.0)
                    return self._check.bad_feature(checked)
            elif kind in vectors.VECTOR_TYPES:
                listed = True
            elif (
                kind is not str
                and value is not None
                and kind is not bool
                and (kind is not int or not -field_checks.MAX_FLOAT <= value <= field_checks.MAX_FLOAT)
            ):
                return self._check.bad_feature(checked)
        if listed or embeddings is not None or self._vector_names:
            return vectors.split(checked, embeddings, self._features_path, self.shapes)
        return checked, None

    def _gather(self, obj: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        return {name: _lookup(obj, self._paths[name]) for name in fields}

    def _oversize(self, raw: bytes) -> records.Rejected:
        return records.Rejected(
            records.OVERSIZE,
            f"record: {len(raw)} bytes, over the limit of {self.max_bytes} bytes "
            "(raise kafka.max_message_bytes if such records are expected)",
            bytes(raw),
        )


def _lenient_loads(raw: bytes) -> Any:
    """The standard library's decoder, for what ``orjson`` refuses (NaN tokens, huge numbers).

    It also decodes an escaped lone UTF-16 surrogate (``"\\ud800"``), which is no Unicode text:
    such a string would break every encoder downstream (alerts, /metrics, the audit log), so it
    raises ``ValueError`` naming where it is.
    """
    obj = json.loads(raw)
    where = _lone_surrogate_at(obj, "record")
    if where is not None:
        raise ValueError(f"{where} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff): not valid Unicode")
    return obj


def _lone_surrogate_at(value: object, path: str) -> str | None:
    """The path of the first string (or key) in ``value`` that UTF-8 cannot encode, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate_at(key, f"{path} key") or _lone_surrogate_at(item, f"{path}.{key}")
            if found is not None:
                return found.encode("utf-8", "backslashreplace").decode("utf-8")
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _dump(obj: object) -> bytes:
    """Bytes for the dead-letter topic of a record that arrived already decoded."""
    try:
        return json.dumps(obj, default=str, allow_nan=True).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return repr(obj).encode("utf-8", errors="replace")

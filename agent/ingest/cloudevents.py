"""KServe inference-logger CloudEvents: decoding a Kafka record, reading V1 / V2 bodies.

KServe's logger (``spec.predictor.logger``) sends two CloudEvents per request, both with the
request's id (the ``Ce-Id`` request header, else a fresh UUID):
``org.kubeflow.serving.inference.request`` carrying the request body and
``org.kubeflow.serving.inference.response`` carrying the response body (only for HTTP 200).
Extension attributes name the ``inferenceservicename``, ``namespace``, ``component`` and
``endpoint`` (default / canary). Delivered to Kafka by a Knative KafkaSink or Kafka broker:

- binary content mode (the KafkaSink default): attributes are Kafka headers ``ce_id``,
  ``ce_type``, ``ce_time``... (``content-type`` holds ``datacontenttype``); the value is the body;
- structured content mode: the value is the whole event as JSON, the body under ``data``
  (or base64 under ``data_base64``).

Bodies: V1 ``{"instances": [...]}`` / ``{"predictions": [...]}`` and the Open Inference
Protocol (V2) ``{"inputs": [{name, shape, datatype, data}]}`` / ``{"outputs": [...]}``.
KServe copies the request's content type to both events (often form-urlencoded from curl), so
bodies are read as JSON whatever it says.

A bad event raises ``BadEventError`` with a ``records`` rejection reason (or ``ERROR_RESPONSE``)
and a detail naming the field; ``kserve.KServeAdapter`` turns it into ``records.Rejected``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from agent.ingest import field_checks, records, source

REQUEST_TYPE: Final = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE: Final = "org.kubeflow.serving.inference.response"
# Dead-letter reason of a response event whose status is not 2xx (besides those of records).
ERROR_RESPONSE: Final = "error_response"

_HEADER_PREFIXES: Final = ("ce_", "ce-")
_STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents"
_SHOWN: Final = 80


class BadEventError(Exception):
    """Raised while reading one event; turned into ``records.Rejected`` at the adapter's boundary."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    type: str
    attributes: Mapping[str, str]  # every context attribute and extension, by lowercase name
    data: Any  # the decoded JSON body


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A request event's feature rows (one per instance) and the time of the event."""

    features: list[dict[str, records.FeatureValue]]
    timestamp: float


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A response event's predictions (with class probabilities for a score row), one per instance."""

    predictions: list[tuple[float | str, dict[str, float] | None]]
    model_version: str | None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


# -- CloudEvent decoding ------------------------------------------------------------------------


def decode_event(message: source.RawMessage) -> CloudEvent:
    """The CloudEvent in one Kafka record (binary or structured mode); raises ``BadEventError``."""
    headers: dict[str, str] = {}
    for name, value in message.headers:
        try:
            headers[name.lower()] = value.decode("utf-8") if value is not None else ""
        except UnicodeDecodeError as exc:
            raise BadEventError(records.MALFORMED_JSON, f"Kafka header {name!r} is not UTF-8: {exc}") from exc
    attributes = {
        name[3:]: value
        for name, value in headers.items()
        if name.startswith(_HEADER_PREFIXES) and len(name) > 3
    }
    content_type = headers.get("content-type", "")
    if attributes and not content_type.startswith(_STRUCTURED_CONTENT_TYPE):
        if content_type:
            attributes.setdefault("datacontenttype", content_type)
        return _event(attributes, _json_body(message.value, "event data (binary mode: the record value)"))
    envelope = _json_body(message.value, "structured CloudEvent (the record value)")
    if not isinstance(envelope, dict) or "specversion" not in envelope:
        raise BadEventError(
            records.MISSING_FIELD,
            "not a CloudEvent: no ce_specversion/ce_id/ce_type Kafka headers (binary mode) and the value "
            "is not a JSON event with 'specversion' (structured mode); point the KServe logger at this "
            "topic through a Knative KafkaSink or Kafka broker",
        )
    attributes = {
        str(key).lower(): value if isinstance(value, str) else json.dumps(value)
        for key, value in envelope.items()
        if key not in ("data", "data_base64")
    }
    return _event(attributes, _structured_data(envelope))


def _json_body(raw: bytes, what: str) -> Any:
    try:
        # Decoded as UTF-8 first: ``json.loads`` of bytes would let a raw surrogate (b"\xed\xa0\x80",
        # not UTF-8) through as a lone surrogate in a string, which no encoder downstream takes.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise BadEventError(records.MALFORMED_JSON, f"{what}: not valid JSON: {exc}") from exc


def _structured_data(envelope: Mapping[str, Any]) -> Any:
    if "data_base64" in envelope:
        encoded = envelope["data_base64"]
        try:
            decoded = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except ValueError as exc:  # binascii.Error, or a string that is not ASCII
            raise BadEventError(records.MALFORMED_JSON, f"data_base64: not base64: {exc}") from exc
        if decoded is None:
            raise BadEventError(records.WRONG_TYPE, f"data_base64: expected a string, got {_show(encoded)}")
        return _json_body(decoded, "data_base64")
    if "data" not in envelope:
        raise BadEventError(
            records.MISSING_FIELD, "structured CloudEvent has no 'data' (or 'data_base64') member"
        )
    data = envelope["data"]
    # A body whose content type was not JSON travels as a string holding the JSON text.
    # "surrogatepass": a lone surrogate (a JSON string may escape one) becomes bytes that are not
    # UTF-8, rejected as malformed JSON, instead of a UnicodeEncodeError here.
    return (
        _json_body(data.encode("utf-8", "surrogatepass"), "data (a string)")
        if isinstance(data, str)
        else data
    )


def _event(attributes: dict[str, str], data: Any) -> CloudEvent:
    event_id = attributes.get("id", "")
    if not event_id:
        raise BadEventError(
            records.MISSING_FIELD, "CloudEvent attribute 'id' (header ce_id) is missing or empty"
        )
    event_type = attributes.get("type", "")
    if event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise BadEventError(
            records.INVALID_VALUE,
            f"CloudEvent type {event_type!r} (id {event_id!r}) is not a KServe inference event; "
            f"expected {REQUEST_TYPE!r} or {RESPONSE_TYPE!r}",
        )
    return CloudEvent(event_id, event_type, attributes, data)


# -- bodies -------------------------------------------------------------------------------------


def _scalar(value: Any, where: str) -> records.FeatureValue:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        # Not math.isfinite: it raises OverflowError on an integer beyond float64 (JSON has them).
        if not field_checks.is_finite(value):
            raise BadEventError(records.NON_FINITE, f"{where}: {_show(value)} is not a finite number")
        return float(value)
    raise BadEventError(
        records.WRONG_TYPE, f"{where}: expected a number, string, bool or null, got {_show(value)}"
    )


def _flatten(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise BadEventError(records.WRONG_TYPE, f"{where}.data: expected an array, got {_show(data)}")
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item, where) if isinstance(item, list) else [item])
    return flat


class _Tensor:
    """One V2 tensor: ``rows`` holds, per instance, its values (1 for a 1-D tensor)."""

    def __init__(self, spec: Any, where: str) -> None:
        if not isinstance(spec, dict):
            raise BadEventError(
                records.WRONG_TYPE, f"{where}: expected a tensor object {{name, shape, datatype, data}}"
            )
        name, shape = spec.get("name"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise BadEventError(
                records.MISSING_FIELD, f"{where}.name: expected a non-empty string, got {_show(name)}"
            )
        where = f"{where} ({name!r})"
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise BadEventError(
                records.WRONG_TYPE, f"{where}.shape: expected a list of sizes, got {_show(shape)}"
            )
        if len(shape) > 2:
            raise BadEventError(
                records.WRONG_TYPE,
                f"{where}.shape {shape}: tensors of more than 2 dimensions are not tabular features",
            )
        flat = _flatten(spec.get("data"), where)
        width = shape[1] if len(shape) == 2 else 1
        if width == 0 and shape[0]:
            # No data would stand for any number of empty rows: memory without bound.
            raise BadEventError(
                records.INVALID_VALUE, f"{where}.shape {_show(shape)}: an instance needs at least one value"
            )
        if len(flat) != shape[0] * width:
            raise BadEventError(
                records.INVALID_VALUE,
                f"{where}: shape {shape} needs {shape[0] * width} values, data has {len(flat)}",
            )
        self.name = name
        self.is_matrix = len(shape) == 2
        self.rows = [flat[i * width : (i + 1) * width] for i in range(shape[0])]


def _column_names(count: int, feature_names: Sequence[str] | None, prefix: str, where: str) -> list[str]:
    """``feature_names`` when given (the count must match), else ``prefix`` + column index."""
    if feature_names is None:
        return [f"{prefix}{j}" for j in range(count)]
    if len(feature_names) != count:
        raise BadEventError(
            records.INVALID_VALUE,
            f"{where}: {count} values per instance but kserve.feature_names has {len(feature_names)} names; "
            "fix kserve.feature_names",
        )
    return list(feature_names)


def read_request(data: Any, feature_names: Sequence[str] | None) -> list[dict[str, records.FeatureValue]]:
    """records.FeatureValue rows of a V1 or V2 request body."""
    if isinstance(data, dict) and isinstance(data.get("instances"), list):
        return [_v1_row(instance, i, feature_names) for i, instance in enumerate(data["instances"])]
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        return _v2_rows(data["inputs"], feature_names)
    raise BadEventError(
        records.MISSING_FIELD,
        "request body has neither 'instances' (V1) nor 'inputs' as a list of tensors (V2), "
        f"got {_show(data)}",
    )


def _v1_row(instance: Any, i: int, feature_names: Sequence[str] | None) -> dict[str, records.FeatureValue]:
    where = f"instances[{i}]"
    if isinstance(instance, dict):
        return {str(name): _scalar(value, f"{where}.{name}") for name, value in instance.items()}
    values = instance if isinstance(instance, list) else [instance]
    if any(isinstance(value, list | dict) for value in values):
        raise BadEventError(
            records.WRONG_TYPE, f"{where}: nested arrays (images, tensors) are not tabular features"
        )
    names = _column_names(len(values), feature_names, "f", where)
    return {
        name: _scalar(value, f"{where}[{j}]")
        for j, (name, value) in enumerate(zip(names, values, strict=True))
    }


def _v2_rows(inputs: list[Any], feature_names: Sequence[str] | None) -> list[dict[str, records.FeatureValue]]:
    tensors = [_Tensor(spec, f"inputs[{k}]") for k, spec in enumerate(inputs)]
    if not tensors:
        raise BadEventError(records.MISSING_FIELD, "inputs: the request has no input tensors")
    batch = len(tensors[0].rows)
    if any(len(t.rows) != batch for t in tensors):
        sizes = {t.name: len(t.rows) for t in tensors}
        raise BadEventError(
            records.INVALID_VALUE, f"inputs: tensors disagree on the batch size (first dimension): {sizes}"
        )
    matrices = [t for t in tensors if t.is_matrix]
    rows: list[dict[str, records.FeatureValue]] = [{} for _ in range(batch)]
    for tensor in tensors:
        if tensor.is_matrix:
            width = len(tensor.rows[0]) if tensor.rows else 0
            own = feature_names if len(matrices) == 1 else None
            names = _column_names(width, own, f"{tensor.name}_", f"inputs ({tensor.name!r})")
        else:
            names = [tensor.name]
        for i, values in enumerate(tensor.rows):
            for name, value in zip(names, values, strict=True):
                rows[i][name] = _scalar(value, f"inputs ({tensor.name!r}) instance {i}")
    return rows


def read_response(data: Any, prediction_output: str | None) -> Response:
    """Predictions (and class probabilities when the output is a score row) of a response body."""
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        items = [_prediction(p, f"predictions[{i}]") for i, p in enumerate(data["predictions"])]
        return Response(items, None)
    if isinstance(data, dict) and isinstance(data.get("outputs"), list):
        tensors = [_Tensor(spec, f"outputs[{k}]") for k, spec in enumerate(data["outputs"])]
        if not tensors:
            raise BadEventError(records.MISSING_FIELD, "outputs: the response has no output tensors")
        chosen = tensors[0]
        if prediction_output is not None:
            named = [t for t in tensors if t.name == prediction_output]
            if not named:
                raise BadEventError(
                    records.MISSING_FIELD,
                    f"outputs: no tensor named {prediction_output!r} (kserve.prediction_output); "
                    f"the response has {[t.name for t in tensors]}",
                )
            chosen = named[0]
        where = f"outputs ({chosen.name!r})"
        items = [
            _prediction(row if chosen.is_matrix else row[0], f"{where} instance {i}")
            for i, row in enumerate(chosen.rows)
        ]
        version = data.get("model_version")
        return Response(items, version if isinstance(version, str) and version else None)
    raise BadEventError(
        records.MISSING_FIELD,
        "response body has neither 'predictions' (V1) nor 'outputs' as a list of tensors (V2), "
        f"got {_show(data)}",
    )


def _prediction(value: Any, where: str) -> tuple[float | str, dict[str, float] | None]:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        scores = [_scalar(v, f"{where}[{j}]") for j, v in enumerate(value)]
        if not scores or not all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores):
            raise BadEventError(
                records.WRONG_TYPE,
                f"{where}: a row of {len(scores)} values that are not class probabilities in [0, 1]; "
                "set kserve.prediction_output to an output with one value per instance",
            )
        probabilities = {str(j): float(s) for j, s in enumerate(scores)}  # type: ignore[arg-type]
        best = max(range(len(scores)), key=lambda j: probabilities[str(j)])
        return float(best), probabilities
    scalar = _scalar(value, where)
    if scalar is None:
        raise BadEventError(records.MISSING_FIELD, f"{where}: the prediction is null")
    return scalar, None


# -- one event, read for the join ---------------------------------------------------------------


def _event_time(event: CloudEvent, message: source.RawMessage) -> float:
    text = event.attributes.get("time")
    if text:
        try:
            return records.parse_rfc3339(text)
        except ValueError:
            pass  # the Kafka timestamp below is the next best time of the event
    return message.timestamp_ms / 1000.0


def read_event(
    event: CloudEvent,
    message: source.RawMessage,
    feature_names: Sequence[str] | None,
    prediction_output: str | None,
) -> Request | Response:
    """What the adapter keeps of one event: its feature rows and time, or its predictions.

    Raises ``BadEventError``: ``ERROR_RESPONSE`` for a response whose status is not 2xx.
    """
    if event.type == REQUEST_TYPE:
        return Request(read_request(event.data, feature_names), _event_time(event, message))
    status = event.attributes.get("statuscode", "")
    if status and not status.startswith("2"):
        raise BadEventError(ERROR_RESPONSE, f"the model answered HTTP {status}: {_show(event.data)}")
    return read_response(event.data, prediction_output)

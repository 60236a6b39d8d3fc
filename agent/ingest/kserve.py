"""KServe inference-logger adapter: CloudEvents in, prediction-log records out.

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

One request of N instances gives N records, ``request_id = f"{id}:{i}"``. Halves wait for their
partner up to ``ttl_s``; ``expire()`` returns the ones that never met, for the dead-letter topic.
Bad events come back as ``records.Rejected`` naming the field; nothing here raises on data.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from agent.ingest import records, source
from agent.settings import groups as kserve_config

KServeSettings = kserve_config.KServeSettings

REQUEST_TYPE: Final = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE: Final = "org.kubeflow.serving.inference.response"
# Dead-letter reasons of this adapter (besides those of agent.records).
UNJOINED_REQUEST: Final = "unjoined_request"
UNJOINED_RESPONSE: Final = "unjoined_response"
ERROR_RESPONSE: Final = "error_response"

_HEADER_PREFIXES: Final = ("ce_", "ce-")
_STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents"
_SEGMENT_ATTRIBUTES: Final = ("endpoint", "component", "namespace")
_SHOWN: Final = 80

Clock = Callable[[], float]
Feature = float | str | bool | None


class _BadEventError(Exception):
    """Raised while reading one event; turned into ``Rejected`` at the adapter's boundary."""

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
class _Request:
    features: list[dict[str, Feature]]
    timestamp: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Response:
    predictions: list[tuple[float | str, dict[str, float] | None]]
    model_version: str | None


@dataclasses.dataclass(slots=True)
class _Half:
    """One event waiting for its partner (or the mark of a rejected one: ``reading`` is None)."""

    is_request: bool
    event: CloudEvent | None
    reading: _Request | _Response | None
    arrived_at: float
    message: source.RawMessage
    rejected_detail: str = ""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


# -- CloudEvent decoding ------------------------------------------------------------------------


def decode_event(message: source.RawMessage) -> CloudEvent:
    """The CloudEvent in one Kafka record (binary or structured mode); raises ``_BadEventError``."""
    headers: dict[str, str] = {}
    for name, value in message.headers:
        try:
            headers[name.lower()] = value.decode("utf-8") if value is not None else ""
        except UnicodeDecodeError as exc:
            raise _BadEventError(
                records.MALFORMED_JSON, f"Kafka header {name!r} is not UTF-8: {exc}"
            ) from exc
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
        raise _BadEventError(
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
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _BadEventError(records.MALFORMED_JSON, f"{what}: not valid JSON: {exc}") from exc


def _structured_data(envelope: Mapping[str, Any]) -> Any:
    if "data_base64" in envelope:
        encoded = envelope["data_base64"]
        try:
            decoded = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except binascii.Error as exc:
            raise _BadEventError(records.MALFORMED_JSON, f"data_base64: not base64: {exc}") from exc
        if decoded is None:
            raise _BadEventError(records.WRONG_TYPE, f"data_base64: expected a string, got {_show(encoded)}")
        return _json_body(decoded, "data_base64")
    if "data" not in envelope:
        raise _BadEventError(
            records.MISSING_FIELD, "structured CloudEvent has no 'data' (or 'data_base64') member"
        )
    data = envelope["data"]
    # A body whose content type was not JSON travels as a string holding the JSON text.
    return _json_body(data.encode("utf-8"), "data (a string)") if isinstance(data, str) else data


def _event(attributes: dict[str, str], data: Any) -> CloudEvent:
    event_id = attributes.get("id", "")
    if not event_id:
        raise _BadEventError(
            records.MISSING_FIELD, "CloudEvent attribute 'id' (header ce_id) is missing or empty"
        )
    event_type = attributes.get("type", "")
    if event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise _BadEventError(
            records.INVALID_VALUE,
            f"CloudEvent type {event_type!r} (id {event_id!r}) is not a KServe inference event; "
            f"expected {REQUEST_TYPE!r} or {RESPONSE_TYPE!r}",
        )
    return CloudEvent(event_id, event_type, attributes, data)


# -- bodies -------------------------------------------------------------------------------------


def _scalar(value: Any, where: str) -> Feature:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _BadEventError(records.NON_FINITE, f"{where}: {value!r} is not a finite number")
        return float(value)
    raise _BadEventError(
        records.WRONG_TYPE, f"{where}: expected a number, string, bool or null, got {_show(value)}"
    )


def _flatten(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise _BadEventError(records.WRONG_TYPE, f"{where}.data: expected an array, got {_show(data)}")
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
            raise _BadEventError(
                records.WRONG_TYPE, f"{where}: expected a tensor object {{name, shape, datatype, data}}"
            )
        name, shape = spec.get("name"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise _BadEventError(
                records.MISSING_FIELD, f"{where}.name: expected a non-empty string, got {_show(name)}"
            )
        where = f"{where} ({name!r})"
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise _BadEventError(
                records.WRONG_TYPE, f"{where}.shape: expected a list of sizes, got {_show(shape)}"
            )
        if len(shape) > 2:
            raise _BadEventError(
                records.WRONG_TYPE,
                f"{where}.shape {shape}: tensors of more than 2 dimensions are not tabular features",
            )
        flat = _flatten(spec.get("data"), where)
        width = shape[1] if len(shape) == 2 else 1
        if len(flat) != shape[0] * width:
            raise _BadEventError(
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
        raise _BadEventError(
            records.INVALID_VALUE,
            f"{where}: {count} values per instance but kserve.feature_names has {len(feature_names)} names; "
            "fix kserve.feature_names",
        )
    return list(feature_names)


def read_request(data: Any, feature_names: Sequence[str] | None) -> list[dict[str, Feature]]:
    """Feature rows of a V1 or V2 request body."""
    if isinstance(data, dict) and isinstance(data.get("instances"), list):
        return [_v1_row(instance, i, feature_names) for i, instance in enumerate(data["instances"])]
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        return _v2_rows(data["inputs"], feature_names)
    raise _BadEventError(
        records.MISSING_FIELD,
        "request body has neither 'instances' (V1) nor 'inputs' as a list of tensors (V2), "
        f"got {_show(data)}",
    )


def _v1_row(instance: Any, i: int, feature_names: Sequence[str] | None) -> dict[str, Feature]:
    where = f"instances[{i}]"
    if isinstance(instance, dict):
        return {str(name): _scalar(value, f"{where}.{name}") for name, value in instance.items()}
    values = instance if isinstance(instance, list) else [instance]
    if any(isinstance(value, list | dict) for value in values):
        raise _BadEventError(
            records.WRONG_TYPE, f"{where}: nested arrays (images, tensors) are not tabular features"
        )
    names = _column_names(len(values), feature_names, "f", where)
    return {
        name: _scalar(value, f"{where}[{j}]")
        for j, (name, value) in enumerate(zip(names, values, strict=True))
    }


def _v2_rows(inputs: list[Any], feature_names: Sequence[str] | None) -> list[dict[str, Feature]]:
    tensors = [_Tensor(spec, f"inputs[{k}]") for k, spec in enumerate(inputs)]
    if not tensors:
        raise _BadEventError(records.MISSING_FIELD, "inputs: the request has no input tensors")
    batch = len(tensors[0].rows)
    if any(len(t.rows) != batch for t in tensors):
        sizes = {t.name: len(t.rows) for t in tensors}
        raise _BadEventError(
            records.INVALID_VALUE, f"inputs: tensors disagree on the batch size (first dimension): {sizes}"
        )
    matrices = [t for t in tensors if t.is_matrix]
    rows: list[dict[str, Feature]] = [{} for _ in range(batch)]
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


def read_response(data: Any, prediction_output: str | None) -> _Response:
    """Predictions (and class probabilities when the output is a score row) of a response body."""
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        items = [_prediction(p, f"predictions[{i}]") for i, p in enumerate(data["predictions"])]
        return _Response(items, None)
    if isinstance(data, dict) and isinstance(data.get("outputs"), list):
        tensors = [_Tensor(spec, f"outputs[{k}]") for k, spec in enumerate(data["outputs"])]
        if not tensors:
            raise _BadEventError(records.MISSING_FIELD, "outputs: the response has no output tensors")
        chosen = tensors[0]
        if prediction_output is not None:
            named = [t for t in tensors if t.name == prediction_output]
            if not named:
                raise _BadEventError(
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
        return _Response(items, version if isinstance(version, str) and version else None)
    raise _BadEventError(
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
            raise _BadEventError(
                records.WRONG_TYPE,
                f"{where}: a row of {len(scores)} values that are not class probabilities in [0, 1]; "
                "set kserve.prediction_output to an output with one value per instance",
            )
        probabilities = {str(j): float(s) for j, s in enumerate(scores)}  # type: ignore[arg-type]
        best = max(range(len(scores)), key=lambda j: probabilities[str(j)])
        return float(best), probabilities
    scalar = _scalar(value, where)
    if scalar is None:
        raise _BadEventError(records.MISSING_FIELD, f"{where}: the prediction is null")
    return scalar, None


def _event_time(event: CloudEvent, message: source.RawMessage) -> float:
    text = event.attributes.get("time")
    if text:
        try:
            return records.parse_rfc3339(text)
        except ValueError:
            pass  # the Kafka timestamp below is the next best time of the event
    return message.timestamp_ms / 1000.0


# -- the adapter --------------------------------------------------------------------------------


class KServeAdapter:
    """Joins KServe request and response events by id into ``PredictionRecord`` objects.

    Not thread-safe: one adapter per consuming loop. ``clock`` (monotonic seconds) only ages
    unjoined events; record timestamps come from the events' ``time`` attribute.
    """

    def __init__(
        self,
        feature_names: list[str] | None = None,
        model_name: str | None = None,
        ttl_s: float = 60.0,
        clock: Clock = time.monotonic,
        *,
        model_version: str | None = None,
        prediction_output: str | None = None,
        max_pending: int = 100_000,
        parser: records.RecordParser | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.model_name = model_name
        self.model_version = model_version
        self.prediction_output = prediction_output
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.clock = clock
        self._parser = parser if parser is not None else records.RecordParser()
        self._pending: collections.OrderedDict[str, _Half] = collections.OrderedDict()
        self._evicted: list[records.Rejected] = []

    @classmethod
    def from_settings(
        cls, config: kserve_config.KServeSettings, clock: Clock = time.monotonic
    ) -> KServeAdapter:
        return cls(
            config.feature_names,
            config.model_name,
            config.ttl_s,
            clock,
            model_version=config.model_version,
            prediction_output=config.prediction_output,
            max_pending=config.max_pending,
        )

    @property
    def pending(self) -> int:
        """Events waiting for their partner."""
        return sum(1 for half in self._pending.values() if half.reading is not None)

    def add(self, message: source.RawMessage) -> list[records.PredictionRecord] | records.Rejected:
        """One Kafka record -> the records of a completed pair, ``[]`` while waiting, or ``Rejected``."""
        try:
            event = decode_event(message)
        except _BadEventError as bad:
            return records.Rejected(bad.reason, bad.detail, message.value)
        is_request = event.type == REQUEST_TYPE
        partner = self._pending.get(event.id)
        if partner is not None and partner.is_request == is_request:
            partner = None  # a redelivered duplicate replaces the waiting copy
        try:
            reading = self._read(event, message, is_request)
        except _BadEventError as bad:
            detail = f"{'request' if is_request else 'response'} event {event.id!r}: {bad.detail}"
            if partner is None:
                # Its partner, when it comes, is answered at once instead of waiting out the TTL.
                self._hold(_Half(is_request, event, None, self.clock(), message, rejected_detail=detail))
            else:
                del self._pending[event.id]
            return records.Rejected(bad.reason, detail, message.value)
        if partner is None:
            self._hold(_Half(is_request, event, reading, self.clock(), message))
            return []
        del self._pending[event.id]
        if partner.reading is None:
            return records.Rejected(
                UNJOINED_REQUEST if is_request else UNJOINED_RESPONSE,
                f"event {event.id!r} cannot be joined: its partner was rejected ({partner.rejected_detail})",
                message.value,
            )
        if is_request:
            assert isinstance(reading, _Request) and isinstance(partner.reading, _Response)
            return self._join(event, reading, partner.reading, message)
        assert isinstance(reading, _Response) and isinstance(partner.reading, _Request)
        assert partner.event is not None
        return self._join(partner.event, partner.reading, reading, message)

    def expire(self) -> list[records.Rejected]:
        """Events older than ``ttl_s`` that never met their partner (and any evicted for room)."""
        expired, self._evicted = self._evicted, []
        deadline = self.clock() - self.ttl_s
        while self._pending:
            event_id, half = next(iter(self._pending.items()))
            if half.arrived_at > deadline:
                break
            del self._pending[event_id]
            if half.reading is not None:
                expired.append(self._unjoined(event_id, half, f"within {self.ttl_s:g}s"))
        return expired

    # -- internals --------------------------------------------------------------------------

    def _read(self, event: CloudEvent, message: source.RawMessage, is_request: bool) -> _Request | _Response:
        if is_request:
            return _Request(read_request(event.data, self.feature_names), _event_time(event, message))
        status = event.attributes.get("statuscode", "")
        if status and not status.startswith("2"):
            raise _BadEventError(ERROR_RESPONSE, f"the model answered HTTP {status}: {_show(event.data)}")
        return read_response(event.data, self.prediction_output)

    def _hold(self, half: _Half) -> None:
        assert half.event is not None
        self._pending.pop(half.event.id, None)
        while len(self._pending) >= self.max_pending:
            event_id, oldest = self._pending.popitem(last=False)
            if oldest.reading is not None:
                self._evicted.append(
                    self._unjoined(event_id, oldest, f"before {self.max_pending} newer events")
                )
        self._pending[half.event.id] = half

    @staticmethod
    def _unjoined(event_id: str, half: _Half, when: str) -> records.Rejected:
        origin = half.message
        kind, missing = ("request", "response") if half.is_request else ("response", "request")
        return records.Rejected(
            UNJOINED_REQUEST if half.is_request else UNJOINED_RESPONSE,
            f"{kind} event {event_id!r} from {origin.topic}[{origin.partition}]@{origin.offset}: "
            f"no {missing} event with that id arrived {when}",
            origin.value,
        )

    def _join(
        self, request_event: CloudEvent, request: _Request, response: _Response, message: source.RawMessage
    ) -> list[records.PredictionRecord] | records.Rejected:
        event_id = request_event.id
        if len(request.features) != len(response.predictions):
            return records.Rejected(
                records.INVALID_VALUE,
                f"event {event_id!r}: {len(request.features)} instances in the request but "
                f"{len(response.predictions)} predictions in the response",
                message.value,
            )
        attributes = request_event.attributes
        model_name = self.model_name or attributes.get("inferenceservicename") or ""
        model_version = (
            response.model_version or self.model_version or attributes.get("endpoint") or "unknown"
        )
        if not model_name:
            return records.Rejected(
                records.MISSING_FIELD,
                f"event {event_id!r}: no model name (no inferenceservicename extension); "
                "set kserve.model_name",
                message.value,
            )
        segment = {name: attributes[name] for name in _SEGMENT_ATTRIBUTES if attributes.get(name)}
        built: list[records.PredictionRecord] = []
        for i, (features, (prediction, probabilities)) in enumerate(
            zip(request.features, response.predictions, strict=True)
        ):
            obj: dict[str, Any] = {
                "request_id": f"{event_id}:{i}",
                "timestamp": request.timestamp,
                "model_name": model_name,
                "model_version": model_version,
                "features": features,
                "prediction": prediction,
            }
            if probabilities is not None:
                obj["probabilities"] = probabilities
            if segment:
                obj["segment"] = segment
            parsed = self._parser.parse_prediction_obj(obj)
            if isinstance(parsed, records.Rejected):
                return records.Rejected(
                    parsed.reason, f"event {event_id!r} instance {i}: {parsed.detail}", message.value
                )
            built.append(parsed)
        return built

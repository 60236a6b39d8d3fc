"""KServe inference-logger adapter: request and response CloudEvents joined into prediction records.

KServe's logger sends a request event and a response event per request, both with the request's
id (``cloudevents`` decodes them and reads their bodies). One request of N instances gives N
records, ``request_id = f"{id}:{i}"``. Halves wait for their partner up to ``ttl_s``; ``expire()``
returns the ones that never met, for the dead-letter topic. Bad events come back as
``records.Rejected`` naming the field; nothing here raises on data.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any, Final

from agent.ingest import cloudevents, parsing, records, source
from agent.settings import groups as kserve_config

KServeSettings = kserve_config.KServeSettings

# Dead-letter reasons of the join (besides those of records and cloudevents).
UNJOINED_REQUEST: Final = "unjoined_request"
UNJOINED_RESPONSE: Final = "unjoined_response"

_SEGMENT_ATTRIBUTES: Final = ("endpoint", "component", "namespace")

Clock = Callable[[], float]

# A waiting half holds the raw event, its decoded CloudEvent and its decoded tensors (a Python
# float costs ~4x its JSON text): an estimate of its bytes, erring high, for the byte bound.
HALF_BYTES_PER_RAW_BYTE: Final = 6
HALF_OVERHEAD_BYTES: Final = 512
# No byte bound given: the entry bound alone applies.
UNBOUNDED_BYTES: Final = 1 << 62


def half_bytes(half: _Half) -> int:
    return HALF_OVERHEAD_BYTES + HALF_BYTES_PER_RAW_BYTE * len(half.message.value)


@dataclasses.dataclass(slots=True)
class _Half:
    """One event waiting for its partner (or the mark of a rejected one: ``reading`` is None)."""

    is_request: bool
    event: cloudevents.CloudEvent | None
    reading: cloudevents.Request | cloudevents.Response | None
    arrived_at: float
    message: source.RawMessage
    rejected_detail: str = ""


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
        parser: parsing.RecordParser | None = None,
        max_bytes: int = UNBOUNDED_BYTES,
    ) -> None:
        """``max_bytes``: the bound on what waiting halves hold (estimated, ``half_bytes``); the
        pairing's share of ``memory.budget_mib``."""
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
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.evicted = 0
        self.clock = clock
        self._parser = parser if parser is not None else parsing.RecordParser()
        self._pending: collections.OrderedDict[str, _Half] = collections.OrderedDict()
        self._evicted: list[records.Rejected] = []

    @classmethod
    def from_settings(
        cls,
        config: kserve_config.KServeSettings,
        clock: Clock = time.monotonic,
        *,
        max_bytes: int = UNBOUNDED_BYTES,
    ) -> KServeAdapter:
        return cls(
            config.feature_names,
            config.model_name,
            config.ttl_s,
            clock,
            model_version=config.model_version,
            prediction_output=config.prediction_output,
            max_pending=config.max_pending,
            max_bytes=max_bytes,
        )

    @property
    def pending(self) -> int:
        """Events waiting for their partner."""
        return sum(1 for half in self._pending.values() if half.reading is not None)

    def add(self, message: source.RawMessage) -> list[records.PredictionRecord] | records.Rejected:
        """One Kafka record -> the records of a completed pair, ``[]`` while waiting, or ``Rejected``."""
        try:
            event = cloudevents.decode_event(message)
        except cloudevents.BadEventError as bad:
            return records.Rejected(bad.reason, bad.detail, message.value)
        is_request = event.type == cloudevents.REQUEST_TYPE
        partner = self._pending.get(event.id)
        if partner is not None and partner.is_request == is_request:
            partner = None  # a redelivered duplicate replaces the waiting copy
        try:
            reading = cloudevents.read_event(event, message, self.feature_names, self.prediction_output)
        except cloudevents.BadEventError as bad:
            detail = f"{'request' if is_request else 'response'} event {event.id!r}: {bad.detail}"
            if partner is None:
                # Its partner, when it comes, is answered at once instead of waiting out the TTL.
                self._hold(_Half(is_request, event, None, self.clock(), message, rejected_detail=detail))
            else:
                self._release(event.id)
            return records.Rejected(bad.reason, detail, message.value)
        if partner is None:
            self._hold(_Half(is_request, event, reading, self.clock(), message))
            return []
        self._release(event.id)
        if partner.reading is None:
            return records.Rejected(
                UNJOINED_REQUEST if is_request else UNJOINED_RESPONSE,
                f"event {event.id!r} cannot be joined: its partner was rejected ({partner.rejected_detail})",
                message.value,
            )
        if is_request:
            assert isinstance(reading, cloudevents.Request)
            assert isinstance(partner.reading, cloudevents.Response)
            return self._join(event, reading, partner.reading, message)
        assert isinstance(reading, cloudevents.Response)
        assert isinstance(partner.reading, cloudevents.Request)
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
            self._release(event_id)
            if half.reading is not None:
                expired.append(self._unjoined(event_id, half, f"within {self.ttl_s:g}s"))
        return expired

    # -- internals --------------------------------------------------------------------------

    def _hold(self, half: _Half) -> None:
        assert half.event is not None
        self._release(half.event.id)
        size = half_bytes(half)
        while self._pending and (
            len(self._pending) >= self.max_pending or self.held_bytes + size > self.max_bytes
        ):
            bound = f"{self.max_bytes} bytes (the kserve share of memory.budget_mib)"
            full = len(self._pending) >= self.max_pending
            when = (
                f"before {self.max_pending} newer events" if full else f"before newer events filled {bound}"
            )
            event_id = next(iter(self._pending))
            oldest = self._release(event_id)
            self.evicted += 1
            if oldest is not None and oldest.reading is not None:
                self._evicted.append(self._unjoined(event_id, oldest, when))
        self._pending[half.event.id] = half
        self.held_bytes += size

    def _release(self, event_id: str) -> _Half | None:
        half = self._pending.pop(event_id, None)
        if half is not None:
            self.held_bytes -= half_bytes(half)
        return half

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
        self,
        request_event: cloudevents.CloudEvent,
        request: cloudevents.Request,
        response: cloudevents.Response,
        message: source.RawMessage,
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

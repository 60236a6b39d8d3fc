"""Fuzz tests of ``KServeAdapter``: any Kafka record gives records or a ``Rejected``; memory is bounded.

Messages start from the recorded KServe payloads (tests/support/kserve/payloads) and are mutated:
arbitrary ``ce_*`` header values (bytes that are not UTF-8 included), headers removed, bodies
replaced by arbitrary bytes, arbitrary JSON, V1 ``instances`` / ``predictions`` and V2
``inputs`` / ``outputs`` tensors of arbitrary shapes, datatypes and data, and structured-mode
envelopes with arbitrary ``data`` / ``data_base64``. What is proved:

- ``add`` returns a list of records that keep the contract, or a ``Rejected`` whose reason is a
  record reason or one of the adapter's (unjoined, error response); it never raises, for one
  event, for request / response pairs that join (same id and batch, either order, binary or
  structured mode, either part replaced now and then) and for interleaved events sharing ids;
- ``expire`` never raises and, once the TTL has passed, leaves nothing pending;
- with a small ``max_pending``, the halves held (``pending``, and the marks of rejected halves)
  never exceed it, and what is evicted for room comes back from ``expire`` as unjoined.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

import hypothesis
from hypothesis import strategies as st

from agent.ingest import cloudevents, kserve, records, source
from tests.support.kserve import payloads
from tests.unit.fuzz.common import (
    FUZZ,
    check_prediction,
    check_rejected,
    dumps,
    json_scalars,
    json_values,
    texts,
)

REASONS: Final = (
    *records.REJECT_REASONS,
    kserve.UNJOINED_REQUEST,
    kserve.UNJOINED_RESPONSE,
    cloudevents.ERROR_RESPONSE,
)
PAYLOAD_NAMES: Final = sorted(path.stem for path in payloads.PAYLOADS.glob("*.json"))
BASES: Final = {name: payloads.load(name) for name in PAYLOAD_NAMES}
STRUCTURED: Final = b"application/cloudevents+json; charset=UTF-8"
TTL_S: Final = 60.0
HEADER_NAMES: Final = (
    "ce_id",
    "ce_type",
    "ce_time",
    "ce_specversion",
    "ce_statuscode",
    "ce_inferenceservicename",
    "ce_endpoint",
    "ce_namespace",
    "ce_component",
    "Ce-Id",
    "ce_",
    "content-type",
)
IDS: Final = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def message(headers: tuple[tuple[str, bytes], ...], value: bytes, offset: int = 0) -> source.RawMessage:
    return source.RawMessage("kserve-events", 0, offset, value, 1_714_564_800_000 + offset, None, headers)


def binary(body: bytes, *, request: bool = True, event_id: str = "a") -> source.RawMessage:
    kind = cloudevents.REQUEST_TYPE if request else cloudevents.RESPONSE_TYPE
    headers = (
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", kind.encode()),
        ("ce_inferenceservicename", b"fraud"),
    )
    return message(headers, body)


def structured(envelope: dict[str, Any]) -> source.RawMessage:
    return message((("content-type", STRUCTURED),), dumps(envelope))


def check_outcome(result: object) -> None:
    # ``--hypothesis-show-statistics`` shows how far the generated events get.
    if isinstance(result, records.Rejected):
        hypothesis.event("rejected", result.reason)
        check_rejected(result, REASONS)
        return
    assert isinstance(result, list), result
    hypothesis.event("outcome", "records" if result else "waiting")
    for record in result:
        assert isinstance(record, records.PredictionRecord), record
        check_prediction(record)


# -- strategies ---------------------------------------------------------------------------------

event_types: Final = st.sampled_from([cloudevents.REQUEST_TYPE, cloudevents.RESPONSE_TYPE]) | texts
header_texts: Final = st.one_of(
    st.sampled_from(IDS),
    event_types,
    st.sampled_from(
        ["200", "500", "", "2", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00", "0001-01-01T00:00:00+23:59"]
    ),
    st.sampled_from(["9999-12-31T23:59:59-23:59", "application/cloudevents+json", "application/json"]),
    texts,
)
header_values: Final = header_texts.map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(
    max_size=24
)
header_names: Final = st.sampled_from(HEADER_NAMES) | texts

probability_rows: Final = st.lists(st.floats(min_value=0.0, max_value=1.0) | json_scalars, max_size=3)
v1_instances: Final = st.lists(
    st.lists(json_scalars, max_size=4) | st.dictionaries(texts, json_scalars, max_size=4) | json_values,
    max_size=4,
)
v1_predictions: Final = st.lists(json_scalars | probability_rows | json_values, max_size=4)
shapes: Final = st.one_of(
    st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=2),
    st.lists(st.integers(min_value=-1, max_value=2**40), max_size=3),
    json_values,
)
datatypes: Final = st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES"]) | json_values


@st.composite
def tensors(draw: st.DrawFn) -> Any:
    """A V2 tensor: often consistent (data fills its shape, flat or nested), often not."""
    shape = draw(shapes)
    size = 0
    if isinstance(shape, list) and shape and all(type(n) is int and 0 <= n <= 4 for n in shape):
        size = 1
        for n in shape:
            size *= n
    data: Any = draw(st.lists(json_scalars, min_size=size, max_size=size))
    if isinstance(shape, list) and len(shape) == 2 and shape[1] and data and draw(st.booleans()):
        width = shape[1]
        data = [data[i : i + width] for i in range(0, len(data), width)]  # rows, as some servers send
    if draw(st.booleans()):
        data = draw(json_values)
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["x", "label", "probabilities"]) | texts | json_values),
        "shape": shape,
        "datatype": draw(datatypes),
        "data": data,
    }
    for key in draw(st.sets(st.sampled_from(sorted(tensor)), max_size=2)):
        del tensor[key]
    return tensor


bodies: Final = st.one_of(
    st.fixed_dictionaries({"instances": v1_instances}),
    st.fixed_dictionaries({"predictions": v1_predictions}),
    st.fixed_dictionaries({"inputs": st.lists(tensors(), max_size=3)}),
    st.fixed_dictionaries(
        {"outputs": st.lists(tensors(), max_size=3)}, optional={"model_version": json_values}
    ),
    json_values,
)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A structured-mode CloudEvent: the usual attributes, any of them replaced or missing."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.sampled_from(IDS)),
        "type": draw(st.sampled_from([cloudevents.REQUEST_TYPE, cloudevents.RESPONSE_TYPE])),
        "time": "2024-05-01T12:00:00Z",
        "inferenceservicename": "income",
    }
    body = draw(bodies)
    data_kind = draw(st.sampled_from(["data", "data_text", "data_base64", "base64_text", "none"]))
    if data_kind == "data":
        envelope["data"] = body
    elif data_kind == "data_text":
        envelope["data"] = dumps(body).decode("utf-8") if draw(st.booleans()) else draw(texts)
    elif data_kind == "data_base64":
        envelope["data_base64"] = base64.b64encode(dumps(body)).decode("ascii")
    elif data_kind == "base64_text":
        envelope["data_base64"] = draw(texts | json_values)
    for key in draw(st.sets(st.sampled_from([*sorted(envelope), "statuscode", "endpoint"]), max_size=3)):
        envelope[key] = draw(json_values | header_texts)
    return envelope


@st.composite
def messages(draw: st.DrawFn) -> source.RawMessage:
    """A recorded payload with its headers and body mutated."""
    headers, value = BASES[draw(st.sampled_from(PAYLOAD_NAMES))]
    mutated = list(headers)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        action = draw(st.sampled_from(["set", "add", "drop"]))
        if action == "drop" and mutated:
            del mutated[draw(st.integers(min_value=0, max_value=len(mutated) - 1))]
        elif action == "set" and mutated:
            index = draw(st.integers(min_value=0, max_value=len(mutated) - 1))
            mutated[index] = (mutated[index][0], draw(header_values))
        else:
            mutated.append((draw(header_names), draw(header_values)))
    if draw(st.booleans()):
        mutated = [(n, b"a") if n.lower() == "ce_id" else (n, v) for n, v in mutated]  # pairs meet
    body_kind = draw(st.sampled_from(["keep", "body", "envelope", "bytes"]))
    if body_kind == "body":
        value = dumps(draw(bodies), ensure_ascii=draw(st.booleans()))
    elif body_kind == "envelope":
        value = dumps(draw(envelopes()))
        # Structured mode: the content type says so (it wins over any ce_* header left).
        mutated = [*(mutated if draw(st.booleans()) else []), ("content-type", STRUCTURED)]
    elif body_kind == "bytes":
        value = draw(st.binary(max_size=64))
    return message(tuple(mutated), value, offset=draw(st.integers(min_value=0, max_value=10)))


# Request / response pairs that mostly join: the same id, bodies of the same batch size, each
# part now and then replaced by anything.
feature_scalars: Final = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-1000, max_value=1000),
    texts,
    st.booleans(),
    st.none(),
    json_scalars,
)
unit_floats: Final = st.floats(min_value=0.0, max_value=1.0)
prediction_scalars: Final = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-1000, max_value=1000), texts
)


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """``usual`` four times in five, else ``other``: pairs should join often enough to be judged."""
    return draw(other) if draw(st.integers(min_value=0, max_value=4)) == 0 else draw(usual)


def _matrix(draw: st.DrawFn, rows: int, width: int, values: st.SearchStrategy[Any]) -> list[Any]:
    flat = draw(st.lists(values, min_size=rows * width, max_size=rows * width))
    if width and draw(st.booleans()):
        return [flat[i : i + width] for i in range(0, len(flat), width)]
    return flat


@st.composite
def request_bodies(draw: st.DrawFn, batch: int) -> Any:
    if draw(st.booleans()):  # V1
        width = draw(st.integers(min_value=1, max_value=4))
        rows = st.lists(feature_scalars, min_size=width, max_size=width) | st.dictionaries(
            texts, feature_scalars, max_size=3
        )
        return {"instances": draw(st.lists(rows, min_size=batch, max_size=batch))}
    inputs = []
    for k in range(draw(st.integers(min_value=1, max_value=3))):
        width = draw(st.integers(min_value=1, max_value=3))
        matrix = draw(st.booleans())
        inputs.append(
            {
                "name": f"in{k}",
                "shape": [batch, width] if matrix else [batch],
                "datatype": draw(datatypes),
                "data": _matrix(draw, batch, width if matrix else 1, feature_scalars),
            }
        )
    return {"inputs": inputs}


@st.composite
def response_bodies(draw: st.DrawFn, batch: int) -> Any:
    if draw(st.booleans()):  # V1
        classes = draw(st.integers(min_value=1, max_value=3))
        row = prediction_scalars | st.lists(unit_floats, min_size=classes, max_size=classes) | feature_scalars
        return {"predictions": draw(st.lists(row, min_size=batch, max_size=batch))}
    outputs = []
    for name in draw(st.lists(st.sampled_from(["label", "probabilities", "x"]), min_size=1, max_size=2)):
        width = draw(st.integers(min_value=1, max_value=3))
        matrix = name == "probabilities"
        outputs.append(
            {
                "name": name,
                "shape": [batch, width] if matrix else [batch],
                "datatype": draw(datatypes),
                "data": _matrix(
                    draw, batch, width if matrix else 1, unit_floats if matrix else prediction_scalars
                ),
            }
        )
    body: dict[str, Any] = {"outputs": outputs}
    if draw(st.booleans()):
        body["model_version"] = draw(st.sampled_from(["12", ""]) | json_values)
    return body


@st.composite
def halves(draw: st.DrawFn, event_id: str, kind: str, body: Any, structured_mode: bool) -> source.RawMessage:
    """One event of a pair, in binary mode (ce_* headers) or structured mode (a JSON envelope)."""
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "type": kind,
        "time": mostly(
            draw, st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00"]), header_texts
        ),
        "inferenceservicename": mostly(draw, st.just("fraud"), st.just("") | texts),
        "endpoint": mostly(draw, st.sampled_from(["default", "canary", ""]), texts),
    }
    if kind == cloudevents.RESPONSE_TYPE and draw(st.booleans()):
        attributes["statuscode"] = mostly(draw, st.just("200"), st.sampled_from(["500", "2"]) | texts)
    if structured_mode:
        envelope: dict[str, Any] = {**attributes, "data": body}
        if draw(st.booleans()):
            envelope = {**attributes, "data_base64": base64.b64encode(dumps(body)).decode("ascii")}
        return message((("content-type", STRUCTURED),), dumps(envelope))
    headers = [(f"ce_{name}", value.encode("utf-8", "surrogatepass")) for name, value in attributes.items()]
    headers.append(("content-type", b"application/x-www-form-urlencoded"))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        headers.append((draw(header_names), draw(header_values)))
    return message(tuple(headers), dumps(body, ensure_ascii=draw(st.booleans())))


@st.composite
def pairs(draw: st.DrawFn) -> list[source.RawMessage]:
    """A request and its response, in either order; either body may be anything instead."""
    batch = draw(st.integers(min_value=0, max_value=3))
    request_body = mostly(draw, request_bodies(batch), bodies)
    response_body = mostly(draw, response_bodies(batch), response_bodies(batch + 1) | bodies)
    event_id = draw(st.sampled_from(IDS))
    structured_mode = draw(st.booleans())
    events = [
        draw(halves(event_id, cloudevents.REQUEST_TYPE, request_body, structured_mode)),
        draw(halves(event_id, cloudevents.RESPONSE_TYPE, response_body, structured_mode)),
    ]
    return events[::-1] if draw(st.booleans()) else events


@st.composite
def adapters(draw: st.DrawFn) -> tuple[kserve.KServeAdapter, Clock]:
    clock = Clock()
    adapter = kserve.KServeAdapter(
        draw(st.none() | st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4)),
        draw(st.none() | st.just("fraud")),
        TTL_S,
        clock,
        model_version=draw(st.none() | st.just("7")),
        prediction_output=draw(st.none() | st.sampled_from(["label", "probabilities", "x"])),
        max_pending=draw(st.integers(min_value=1, max_value=4)),
    )
    return adapter, clock


def default_setup() -> tuple[kserve.KServeAdapter, Clock]:
    clock = Clock()
    return kserve.KServeAdapter(ttl_s=TTL_S, clock=clock, max_pending=2), clock


def drain(adapter: kserve.KServeAdapter, clock: Clock) -> None:
    """Past the TTL every half left is returned as unjoined, and nothing stays pending."""
    clock.now += TTL_S + 1.0
    for expired in adapter.expire():
        check_rejected(expired, (kserve.UNJOINED_REQUEST, kserve.UNJOINED_RESPONSE))
    assert adapter.pending == 0
    assert adapter.expire() == []


# -- the tests ----------------------------------------------------------------------------------


@hypothesis.settings(FUZZ, max_examples=250)
@hypothesis.given(event=messages(), setup=adapters())
# Inputs that raised before the fixes in agent/ingest/cloudevents.py:
# an integer beyond float64 in an instance (OverflowError in math.isfinite),
@hypothesis.example(event=binary(b'{"instances": [[' + b"9" * 400 + b"]]}"), setup=default_setup())
# data_base64 with a non-ASCII character (ValueError from base64, not binascii.Error),
@hypothesis.example(
    event=structured(
        {"specversion": "1.0", "id": "a", "type": cloudevents.REQUEST_TYPE, "data_base64": "\u00e9"}
    ),
    setup=default_setup(),
)
# a string ``data`` holding a lone surrogate (UnicodeEncodeError),
@hypothesis.example(
    event=structured({"specversion": "1.0", "id": "a", "type": cloudevents.REQUEST_TYPE, "data": "\ud800"}),
    setup=default_setup(),
)
# and a V2 tensor of shape [N, 0]: N empty rows built from no data (memory without bound).
@hypothesis.example(
    event=binary(b'{"inputs": [{"name": "x", "shape": [1000000000000, 0], "datatype": "FP32", "data": []}]}'),
    setup=default_setup(),
)
def test_any_event_gives_records_or_a_rejection(
    event: source.RawMessage, setup: tuple[kserve.KServeAdapter, Clock]
) -> None:
    adapter, clock = setup
    check_outcome(adapter.add(event))
    # The same event again: a redelivery replaces the copy held (the outcome is the same kind).
    check_outcome(adapter.add(event))
    drain(adapter, clock)


@hypothesis.settings(FUZZ, max_examples=150)
@hypothesis.given(pair=pairs(), setup=adapters())
def test_request_response_pairs_join_or_are_rejected(
    pair: list[source.RawMessage], setup: tuple[kserve.KServeAdapter, Clock]
) -> None:
    adapter, clock = setup
    first, second = pair
    held = adapter.add(first)
    check_outcome(held)
    assert adapter.pending == (1 if held == [] else 0)  # a fresh adapter: waiting, or rejected
    outcome = adapter.add(second)
    check_outcome(outcome)
    if isinstance(outcome, list) and outcome:
        # Joined: one record per instance, nothing of the pair left waiting.
        assert [record.request_id.rsplit(":", 1)[1] for record in outcome] == [
            str(i) for i in range(len(outcome))
        ]
        assert adapter.pending == 0
    drain(adapter, clock)


@hypothesis.settings(FUZZ, max_examples=100)
@hypothesis.given(
    events=st.lists(pairs() | messages().map(lambda event: [event]), min_size=1, max_size=5).flatmap(
        lambda groups: st.permutations([event for group in groups for event in group])
    ),
    setup=adapters(),
)
def test_interleaved_events_with_shared_ids_never_raise(
    events: list[source.RawMessage], setup: tuple[kserve.KServeAdapter, Clock]
) -> None:
    adapter, clock = setup
    for event in events:
        check_outcome(adapter.add(event))
        assert adapter.pending <= adapter.max_pending
        clock.now += 1.0
        for expired in adapter.expire():
            check_rejected(expired, (kserve.UNJOINED_REQUEST, kserve.UNJOINED_RESPONSE))
    drain(adapter, clock)


VALID_REQUEST: Final = json.dumps({"instances": [[1.0, 2.0]]}).encode()
VALID_RESPONSE: Final = json.dumps({"predictions": [1]}).encode()
BAD_BODY: Final = b"{not json"


@hypothesis.settings(FUZZ, max_examples=100)
@hypothesis.given(
    max_pending=st.integers(min_value=1, max_value=5),
    halves=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30), st.booleans(), st.booleans()), max_size=60
    ),
)
def test_pending_halves_never_exceed_max_pending(
    max_pending: int, halves: list[tuple[int, bool, bool]]
) -> None:
    clock = Clock()
    adapter = kserve.KServeAdapter(ttl_s=TTL_S, clock=clock, max_pending=max_pending)
    for number, request, valid in halves:
        body = (VALID_REQUEST if request else VALID_RESPONSE) if valid else BAD_BODY
        check_outcome(adapter.add(binary(body, request=request, event_id=f"id-{number}")))
        assert adapter.pending <= max_pending
        # ``pending`` counts the halves awaiting a partner; the marks of rejected halves are
        # held too (their partner is answered at once). Both are what bounds the memory.
        assert len(adapter._pending) <= max_pending
    drain(adapter, clock)


@hypothesis.settings(FUZZ, max_examples=50)
@hypothesis.given(
    max_pending=st.integers(min_value=1, max_value=5), count=st.integers(min_value=0, max_value=40)
)
def test_unpaired_halves_beyond_max_pending_are_evicted_as_unjoined(max_pending: int, count: int) -> None:
    clock = Clock()
    adapter = kserve.KServeAdapter(ttl_s=TTL_S, clock=clock, max_pending=max_pending)
    for number in range(count):
        assert adapter.add(binary(VALID_REQUEST, event_id=f"id-{number}")) == []
        assert adapter.pending == min(number + 1, max_pending)
    evicted = adapter.expire()  # the TTL has not passed: only the halves evicted for room
    assert len(evicted) == max(0, count - max_pending)
    assert all(r.reason == kserve.UNJOINED_REQUEST for r in evicted)
    assert adapter.pending == min(count, max_pending)
    drain(adapter, clock)

"""KServe inference-logger CloudEvents -> prediction-log records, on recorded payloads."""

from __future__ import annotations

import pydantic
import pytest

from agent.ingest import cloudevents, kserve, records, source
from tests.support.kserve import payloads


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def joined(adapter: kserve.KServeAdapter, first: str, second: str) -> list[records.PredictionRecord]:
    assert adapter.add(payloads.message(first, offset=0)) == []
    result = adapter.add(payloads.message(second, offset=1))
    assert isinstance(result, list), result
    assert adapter.pending == 0
    return result


def test_v1_binary_pair_gives_one_record_per_instance() -> None:
    got = joined(kserve.KServeAdapter(), "v1_binary_request", "v1_binary_response")
    event_id = "e58f1edd-43bc-42f6-a10a-d1adb5cab831"
    assert [r.request_id for r in got] == [f"{event_id}:0", f"{event_id}:1"]
    first = got[0]
    assert first.features == {"f0": 6.8, "f1": 2.8, "f2": 4.8, "f3": 1.4}
    assert got[1].features == {"f0": 6.0, "f1": 3.4, "f2": 4.5, "f3": 1.6}
    assert [r.prediction for r in got] == [1.0, 1.0]
    assert (first.model_name, first.model_version) == ("sklearn-iris", "unknown")  # V1 has no version
    assert first.timestamp == records.parse_rfc3339("2023-01-30T10:45:00Z")  # the request's ce_time
    assert first.segment == {"component": "predictor", "namespace": "default"}  # empty endpoint left out
    assert first.status == "ok"


def test_the_response_may_arrive_first_and_names_come_from_settings() -> None:
    config = kserve.KServeSettings(
        enabled=True,
        feature_names=["sepal_length", "sepal_width", "petal_length", "petal_width"],
        model_name="iris",
        model_version="3",
    )
    adapter = kserve.KServeAdapter.from_settings(config)
    got = joined(adapter, "v1_binary_response", "v1_binary_request")
    assert got[1].features == {
        "sepal_length": 6.0,
        "sepal_width": 3.4,
        "petal_length": 4.5,
        "petal_width": 1.6,
    }
    assert {(r.model_name, r.model_version) for r in got} == {("iris", "3")}


def test_v2_structured_pair_with_a_2d_input_and_a_model_version() -> None:
    adapter = kserve.KServeAdapter(feature_names=["age", "hours_per_week"], model_version="ignored")
    got = joined(adapter, "v2_structured_request", "v2_structured_response")
    assert [r.features for r in got] == [
        {"age": 39.0, "hours_per_week": 13.0},
        {"age": 50.0, "hours_per_week": 9.0},
        {"age": 38.0, "hours_per_week": 9.0},
    ]
    assert [r.prediction for r in got] == [0.0, 1.0, 0.0]
    assert {(r.model_name, r.model_version) for r in got} == {("income", "4")}  # the response's version wins
    assert got[0].segment == {"endpoint": "canary", "component": "predictor", "namespace": "models"}
    assert got[0].timestamp == records.parse_rfc3339("2024-05-01T12:00:00.123456Z")
    assert got[2].request_id == "5a0c2d61-7f0e-4d5f-9b7a-0c6f0b2f4d11:2"


def test_v2_without_feature_names_numbers_the_columns_of_the_input() -> None:
    got = joined(kserve.KServeAdapter(), "v2_structured_request", "v2_structured_response")
    assert got[0].features == {"input-0_0": 39.0, "input-0_1": 13.0}


def test_v2_named_inputs_become_columns_and_an_output_can_be_chosen() -> None:
    got = joined(kserve.KServeAdapter(), "v2_binary_named_request", "v2_binary_named_response")
    assert [r.features for r in got] == [
        {"age": 42.0, "country": "FR", "new_user": True},
        {"age": 23.5, "country": "DE", "new_user": False},
    ]
    assert [r.prediction for r in got] == [1.0, 0.0]  # the first output, "label"
    assert got[0].probabilities is None

    scored = joined(
        kserve.KServeAdapter(prediction_output="probabilities"),
        "v2_binary_named_request",
        "v2_binary_named_response",
    )
    assert [r.prediction for r in scored] == [1.0, 0.0]  # argmax of each row
    assert scored[0].probabilities == {"0": 0.1, "1": 0.9}
    assert [r.confidence for r in scored] == [0.9, 0.8]
    assert scored[0].model_version == "12"


def test_v1_dict_instances_and_probability_rows() -> None:
    got = joined(kserve.KServeAdapter(), "v1_batched_request", "v1_batched_response")
    assert [r.features for r in got] == [
        {"amount": 12.5, "merchant": "grocery"},
        {"amount": 980.0, "merchant": "travel"},
        {"amount": 3.2, "merchant": "grocery"},
    ]
    assert [r.prediction for r in got] == [0.0, 1.0, 0.0]  # a tie goes to the first class
    assert [r.confidence for r in got] == [0.95, 0.7, 0.5]
    assert got[0].model_version == "default"  # the endpoint extension when nothing else names it


@pytest.mark.parametrize(
    ("name", "reason", "detail"),
    [
        ("malformed_binary_body", records.MALFORMED_JSON, "not valid JSON"),
        ("malformed_structured_no_id", records.MISSING_FIELD, "'id' (header ce_id) is missing"),
        ("malformed_wrong_type", records.INVALID_VALUE, "'com.example.audit'"),
        ("malformed_v2_shape", records.INVALID_VALUE, "shape [2, 3] needs 6 values, data has 4"),
        ("not_a_cloudevent", records.MISSING_FIELD, "not a CloudEvent"),
    ],
)
def test_malformed_events_are_rejected_with_reason_and_detail(name: str, reason: str, detail: str) -> None:
    message = payloads.message(name)
    result = kserve.KServeAdapter().add(message)
    assert isinstance(result, records.Rejected)
    assert result.reason == reason
    assert detail in result.detail
    assert result.raw == message.value


def test_a_rejected_half_makes_its_partner_rejected_at_once() -> None:
    adapter = kserve.KServeAdapter()
    first = adapter.add(payloads.message("malformed_nan_request"))
    assert isinstance(first, records.Rejected)
    assert first.reason == records.NON_FINITE
    assert "instances[0][1]" in first.detail
    second = adapter.add(payloads.message("malformed_nan_response", offset=1))
    assert isinstance(second, records.Rejected)
    assert second.reason == kserve.UNJOINED_RESPONSE
    assert "partner was rejected" in second.detail
    assert adapter.pending == 0
    assert adapter.expire() == []


def test_instance_count_mismatch_is_rejected() -> None:
    adapter = kserve.KServeAdapter()
    assert adapter.add(payloads.message("malformed_count_request")) == []
    result = adapter.add(payloads.message("malformed_count_response", offset=1))
    assert isinstance(result, records.Rejected)
    assert result.reason == records.INVALID_VALUE
    assert "2 instances in the request but 1 predictions" in result.detail


def test_feature_names_that_do_not_fit_are_rejected_with_the_fix() -> None:
    result = kserve.KServeAdapter(feature_names=["a", "b"]).add(payloads.message("v1_binary_request"))
    assert isinstance(result, records.Rejected)
    assert result.reason == records.INVALID_VALUE
    assert "4 values per instance but kserve.feature_names has 2 names" in result.detail


def test_unjoined_events_expire_after_the_ttl() -> None:
    clock = ManualClock()
    adapter = kserve.KServeAdapter(ttl_s=60.0, clock=clock)
    request = payloads.message("unjoined_request", offset=5)
    assert adapter.add(request) == []
    clock.now = 30.0
    assert adapter.add(payloads.message("unjoined_response", offset=6)) == []
    assert adapter.pending == 2
    clock.now = 59.5
    assert adapter.expire() == []
    clock.now = 60.0
    (expired,) = adapter.expire()
    assert expired.reason == kserve.UNJOINED_REQUEST
    assert "'lonely-request' from kserve-events[0]@5" in expired.detail
    assert "no response event" in expired.detail
    assert expired.raw == request.value
    clock.now = 90.0
    assert [r.reason for r in adapter.expire()] == [kserve.UNJOINED_RESPONSE]
    assert adapter.pending == 0


def test_the_oldest_unjoined_event_is_evicted_when_full() -> None:
    adapter = kserve.KServeAdapter(max_pending=1, clock=ManualClock())
    assert adapter.add(payloads.message("unjoined_request")) == []
    assert adapter.add(payloads.message("unjoined_response", offset=1)) == []
    (evicted,) = adapter.expire()
    assert evicted.reason == kserve.UNJOINED_REQUEST
    assert "before 1 newer events" in evicted.detail
    assert adapter.pending == 1


def test_the_oldest_unjoined_event_is_evicted_at_the_byte_bound() -> None:
    first = payloads.message("unjoined_request")
    second = payloads.message("unjoined_response", offset=1)
    room = kserve.HALF_OVERHEAD_BYTES + kserve.HALF_BYTES_PER_RAW_BYTE * max(
        len(first.value), len(second.value)
    )
    clock = ManualClock()
    adapter = kserve.KServeAdapter(max_pending=100, max_bytes=room, clock=clock)
    assert adapter.add(first) == []
    assert adapter.add(second) == []
    (evicted,) = adapter.expire()
    assert evicted.reason == kserve.UNJOINED_REQUEST
    assert "memory.budget_mib" in evicted.detail
    assert (adapter.pending, adapter.evicted) == (1, 1)
    assert 0 < adapter.held_bytes <= room
    clock.now = 1000.0
    assert len(adapter.expire()) == 1
    assert adapter.held_bytes == 0


def test_a_redelivered_request_is_joined_once() -> None:
    adapter = kserve.KServeAdapter()
    assert adapter.add(payloads.message("v1_binary_request")) == []
    assert adapter.add(payloads.message("v1_binary_request", offset=1)) == []
    result = adapter.add(payloads.message("v1_binary_response", offset=2))
    assert isinstance(result, list)
    assert len(result) == 2
    assert adapter.pending == 0


def strip_header(message: source.RawMessage, name: str) -> source.RawMessage:
    headers = tuple((key, value) for key, value in message.headers if key != name)
    return source.RawMessage(
        message.topic, message.partition, message.offset, message.value, 0, None, headers
    )


def test_no_model_name_anywhere_is_rejected_with_the_setting_to_use() -> None:
    adapter = kserve.KServeAdapter()
    assert adapter.add(strip_header(payloads.message("v1_binary_request"), "ce_inferenceservicename")) == []
    result = adapter.add(payloads.message("v1_binary_response", offset=1))
    assert isinstance(result, records.Rejected)
    assert "set kserve.model_name" in result.detail


def test_a_response_with_an_error_status_is_rejected_as_such() -> None:
    headers, _ = payloads.load("unjoined_response")
    message = source.RawMessage(
        "t", 0, 0, b'{"error":"unexpected feature count"}', 0, None, (*headers, ("ce_statuscode", b"422"))
    )
    result = kserve.KServeAdapter().add(message)
    assert isinstance(result, records.Rejected)
    assert result.reason == cloudevents.ERROR_RESPONSE
    assert "HTTP 422" in result.detail


def test_settings_refuse_duplicate_feature_names() -> None:
    with pytest.raises(pydantic.ValidationError, match="feature_names must be distinct"):
        kserve.KServeSettings(feature_names=["a", "a"])


def test_a_body_that_is_not_utf8_is_malformed_json_never_a_lone_surrogate() -> None:
    # b"\xed\xa0\x80" is a UTF-16 surrogate written as if it were UTF-8: json.loads of the bytes
    # would read it as "\ud800" (found by tests/unit/fuzz/test_fuzz_kserve.py).
    headers = (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"a"),
        ("ce_type", cloudevents.RESPONSE_TYPE.encode()),
        ("ce_time", b"2023-01-30T10:45:00Z"),
        ("ce_inferenceservicename", b"fraud"),
    )
    value = b'{"outputs": [{"name": "label", "shape": [1], "datatype": "FP32", "data": ["\xed\xa0\x80"]}]}'
    result = kserve.KServeAdapter().add(source.RawMessage("kserve-events", 0, 0, value, 0, None, headers))
    assert isinstance(result, records.Rejected)
    assert result.reason == records.MALFORMED_JSON
    assert "can't decode byte 0xed" in result.detail

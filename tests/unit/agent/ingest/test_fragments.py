"""Window fragments: what the ingest stage publishes, read back exactly; unknown formats refused."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import cast

import msgspec
import pytest

from agent.ingest import float_rows, fragments, kserve, label_join, parsing, records, source, worker
from tests.support.kserve import payloads


def record(index: int, model: str = "churn") -> records.PredictionRecord:
    return records.PredictionRecord(
        f"r{index}", 1_700_000_000.0 + index, model, "3", {"x": index, "y": 0.5, "c": "red", "b": True}, 1.0
    )


def test_a_fragment_round_trips_with_ints_kept_apart_from_floats() -> None:
    entries = [fragments.Entry(record(i), i, fragments.PREDICTIONS, 2, 100 + i) for i in range(3)]
    entries.append(fragments.Entry(record(9), 9, fragments.LABELS, 1, 7, True, "yes"))
    fragment = fragments.Fragment(fragments.FORMAT, "churn", entries, {2: 1_700_000_002.0}, "agent-0")
    back = fragments.decode(fragments.encode(fragment))
    assert back == fragment
    assert type(back.entries[0].record.features["x"]) is int  # a categorical "3" never becomes "3.0"


def test_a_fragment_of_another_format_or_no_fragment_at_all_is_refused() -> None:
    entries = [fragments.Entry(record(0), 0, fragments.PREDICTIONS, 0, 0)]
    for written in fragments.FORMATS:
        wire = msgspec.msgpack.decode(
            fragments.encode(fragments.Fragment(written, "churn", entries, {}, "agent-0"))
        )
        wire[0] = 4  # a format from a later agent, laid out as one of ours
        with pytest.raises(
            fragments.FragmentError, match=re.escape("fragment format 4; this agent reads formats (1, 2, 3)")
        ):
            fragments.decode(msgspec.msgpack.encode(wire))
    with pytest.raises(ValueError, match="writes formats"):
        fragments.encode(fragments.Fragment(4, "churn", entries, {}, "agent-0"))
    with pytest.raises(fragments.FragmentError, match="not a window fragment"):
        fragments.decode(msgspec.msgpack.encode({"hello": "world"}))


def with_features(index: int, features: dict[str, records.WireFeatureValue]) -> records.PredictionRecord:
    return msgspec.structs.replace(record(index), features=features)


def test_records_with_other_feature_names_read_back_as_they_were_and_share_layouts() -> None:
    feature_sets: list[dict[str, records.WireFeatureValue]] = [
        {"x": 1, "y": 0.5, "c": "red"},
        {"c": "blue", "x": 2, "y": 1.5},  # the same names in another order
        {"x": 3},  # some lacking
        {},
        {"x": 4, "y": None, "c": "red", "extra": True},  # one more
        {"x": 5, "y": 2.5, "z": "z"},  # as many names, not the same ones
        {"x": 6, "y": 3.5, "c": "red"},
    ]
    entries = [
        fragments.Entry(with_features(i, features), i, fragments.PREDICTIONS, 0, i)
        for i, features in enumerate(feature_sets)
    ]
    fragment = fragments.Fragment(fragments.FORMAT, "churn", entries, {0: 1.0}, "agent-0")
    raw = fragments.encode(fragment)
    back = fragments.decode(raw)
    assert back == fragment
    assert [dict(entry.record.features) for entry in back.entries] == feature_sets
    assert all(type(entry.record.features) is records.FeatureRow for entry in back.entries)
    # Each distinct set of names travels once per message.
    assert len(msgspec.msgpack.decode(raw)[5]) == 5
    layouts = [
        entry.record.features.layout
        for entry in back.entries
        if isinstance(entry.record.features, records.FeatureRow)
    ]
    assert layouts[0] is layouts[1] is layouts[6]
    # Another message naming the same features decodes onto the same layout object.
    again = fragments.decode(fragments.encode(fragment)).entries[0].record.features
    assert isinstance(again, records.FeatureRow) and again.layout is layouts[0]


def test_fragments_with_a_dict_per_record_are_read_and_written_for_earlier_agents() -> None:
    entries = [fragments.Entry(record(i), i, fragments.PREDICTIONS, 0, i) for i in range(3)]
    earlier = fragments.Fragment(fragments.FORMAT_DICT_FEATURES, "churn", entries, {0: 1.0}, "old-agent")
    # What an agent built before format 2 wrote, and read with (one decoder, a dict per record).
    written_before = msgspec.msgpack.encode(earlier)
    read_before = msgspec.msgpack.Decoder(fragments.Fragment)
    back = fragments.decode(written_before)
    assert back == earlier
    assert type(back.entries[0].record.features) is dict
    # streams.fragment_format: 1 writes what such an agent reads, rows decoded here included.
    rows = fragments.decode(fragments.encode(msgspec.structs.replace(earlier, format=fragments.FORMAT)))
    assert type(rows.entries[0].record.features) is records.FeatureRow
    rewritten = fragments.encode(msgspec.structs.replace(rows, format=fragments.FORMAT_DICT_FEATURES))
    assert rewritten == written_before
    assert read_before.decode(rewritten) == earlier
    # ...and an agent before format 2 cannot read format 2: the reason the setting exists.
    with pytest.raises(msgspec.DecodeError):
        read_before.decode(fragments.encode(msgspec.structs.replace(earlier, format=fragments.FORMAT)))


def test_a_fragment_whose_layout_number_or_value_count_does_not_fit_is_refused() -> None:
    entries = [fragments.Entry(record(i), i, fragments.PREDICTIONS, 0, i) for i in range(2)]
    wire = msgspec.msgpack.decode(
        fragments.encode(fragments.Fragment(fragments.FORMAT, "churn", entries, {}, "a"))
    )
    wire[2][1][0][4] = 7  # the second record names a layout the message does not carry
    with pytest.raises(fragments.FragmentError, match="not a window fragment"):
        fragments.decode(msgspec.msgpack.encode(wire))
    wire[2][1][0][4] = -1  # nor a negative one (Python would read the last)
    with pytest.raises(fragments.FragmentError, match="not a window fragment"):
        fragments.decode(msgspec.msgpack.encode(wire))
    wire[2][1][0][4] = 0
    wire[2][1][0][5] = wire[2][1][0][5][:-1]  # one value short of its layout
    with pytest.raises(fragments.FragmentError, match="not a window fragment"):
        fragments.decode(msgspec.msgpack.encode(wire))


def test_a_model_always_lands_in_the_same_partition() -> None:
    # CRC-32, not Python's per-process string hash: every agent computes the same partition.
    assert fragments.partition_for("churn", 12) == zlib.crc32(b"churn") % 12 == 0
    assert {fragments.partition_for(f"m{i}", 4) for i in range(40)} == {0, 1, 2, 3}


def message(topic: str, value: bytes, partition: int = 0, offset: int = 0) -> source.RawMessage:
    return source.RawMessage(topic, partition, offset, value, 0)


def test_the_worker_joins_labels_rejects_bad_input_and_splits_fragments() -> None:
    ingest = worker.IngestWorker(
        parser=parsing.RecordParser(),
        labels_topic="labels",
        join=label_join.LabelJoin(60.0, 100, clock=lambda: 0.0),
        producer="agent-0",
        max_fragment_records=2,
    )
    for i in range(3):
        body = msgspec.json.encode(
            {"request_id": f"r{i}", "timestamp": 1.0 + i, "model_name": "churn", "model_version": "3",
             "features": {"x": i}, "prediction": 1.0}
        )  # fmt: skip
        assert ingest.add(message("predictions", body, partition=1, offset=10 + i)) == []
    label = msgspec.json.encode({"request_id": "r1", "timestamp": 5.0, "label": 0})
    assert ingest.add(message("labels", label, partition=1, offset=4)) == []
    (rejected,) = ingest.add(message("predictions", b"{not json", partition=1, offset=13))
    assert rejected.reason == records.MALFORMED_JSON
    taken = ingest.take()
    assert [len(f.entries) for f in taken] == [2, 2]  # four entries, at most two per fragment
    joined = [e for f in taken for e in f.entries if e.labelled]
    assert [(e.record.request_id, e.label, e.index, e.stream, e.offset) for e in joined] == [
        ("r1", 0, 11, fragments.LABELS, 4)
    ]
    assert taken[0].watermarks == {1: 3.0}
    assert ingest.take() == []


class DeepParser(parsing.RecordParser):
    """A parser with a bug no check foresaw: a record whose id starts with "deep" overflows the stack."""

    def parse_prediction(self, raw: bytes) -> records.PredictionRecord | records.Rejected:
        parsed = super().parse_prediction(raw)
        if isinstance(parsed, records.PredictionRecord) and parsed.request_id.startswith("deep"):
            raise RecursionError("maximum recursion depth exceeded while flattening")
        return parsed


def test_a_record_that_raises_anywhere_comes_back_rejected_and_the_rest_go_on() -> None:
    ingest = worker.IngestWorker(
        parser=DeepParser(), labels_topic=None, join=None, producer="agent-0", max_fragment_records=10
    )
    bodies = [
        msgspec.json.encode(
            {
                "request_id": rid,
                "timestamp": 1.0,
                "model_name": "churn",
                "model_version": "3",
                "features": {"x": 1},
                "prediction": 1.0,
            }
        )
        for rid in ("a", "deep-1", "b")
    ]
    outcomes = [ingest.add(message("predictions", body, offset=i)) for i, body in enumerate(bodies)]
    assert outcomes[0] == [] and outcomes[2] == []
    (rejected,) = outcomes[1]
    assert rejected.reason == records.PROCESSING_ERROR
    assert rejected.detail == "RecursionError: maximum recursion depth exceeded while flattening"
    assert rejected.raw == bodies[1]
    assert ingest.counts.rejected == 1 and ingest.counts.predictions == 2
    assert [e.record.request_id for f in ingest.take() for e in f.entries] == ["a", "b"]


def test_records_and_labels_stamped_far_ahead_of_the_agents_clock_are_rejected() -> None:
    now = 1_767_225_600.0
    ingest = worker.IngestWorker(
        parser=parsing.RecordParser(),
        labels_topic="labels",
        join=None,
        producer="a",
        max_fragment_records=10,
        wall_clock=lambda: now,
        max_future_skew_s=3600.0,
    )

    def prediction(request_id: str, timestamp: float) -> bytes:
        return msgspec.json.encode(
            {"request_id": request_id, "timestamp": timestamp, "model_name": "churn", "model_version": "3",
             "features": {"x": 1}, "prediction": 1.0}
        )  # fmt: skip

    assert ingest.add(message("predictions", prediction("soon", now + 3000))) == []
    (year_5000,) = ingest.add(message("predictions", prediction("far", 95_617_584_000.0)))
    assert year_5000.reason == records.INVALID_VALUE
    assert (
        "ahead of the agent's clock" in year_5000.detail
        and "kafka.max_future_skew_s=3600" in year_5000.detail
    )
    label = msgspec.json.encode({"request_id": "soon", "timestamp": now + 7200, "label": 1})
    (late_label,) = ingest.add(message("labels", label))
    assert late_label.reason == records.INVALID_VALUE
    assert [e.record.request_id for f in ingest.take() for e in f.entries] == ["soon"]


def test_a_kserve_event_over_the_byte_limit_is_rejected_before_it_is_decoded() -> None:
    ingest = worker.IngestWorker(
        parser=parsing.RecordParser(max_bytes=100),
        labels_topic=None,
        join=None,
        producer="a",
        max_fragment_records=10,
        kserve_adapter=kserve.KServeAdapter(["age", "country", "new_user"], "fraud"),
    )
    event = payloads.message("v2_binary_named_request")
    assert len(event.value) > 100
    (rejected,) = ingest.add(event)
    assert rejected.reason == records.OVERSIZE
    assert (
        rejected.detail == f"KServe event of {len(event.value)} bytes, more than kafka.max_message_bytes=100"
    )


def embedded(index: int, dimension: int) -> records.PredictionRecord:
    vector = bytes(range(256)) * (dimension * 4 // 256)
    return msgspec.structs.replace(record(index), embeddings={"text_emb": vector})


def test_a_fragment_over_the_message_bound_is_split_in_order_and_reads_back_whole() -> None:
    # 2000 records with a 768-dimension embedding: over 6 MB in one message, beyond Kafka's
    # default message.max.bytes.
    entries = [fragments.Entry(embedded(i, 768), i, fragments.PREDICTIONS, 0, i) for i in range(2000)]
    fragment = fragments.Fragment(fragments.FORMAT, "churn", entries, {0: 1_700_002_000.0}, "agent-0")
    assert len(fragments.encode(fragment)) > 6_000_000
    messages = fragments.encode_bounded(fragment)
    assert len(messages) >= 7
    assert all(len(message) <= fragments.MAX_MESSAGE_BYTES for message in messages)
    parts = [fragments.decode(message) for message in messages]
    assert [entry for part in parts for entry in part.entries] == entries
    assert {(part.model, part.producer, tuple(part.watermarks.items())) for part in parts} == {
        ("churn", "agent-0", ((0, 1_700_002_000.0),))
    }


def test_a_fragment_within_the_bound_is_one_message_and_a_lone_large_entry_travels_alone() -> None:
    small = fragments.Fragment(
        fragments.FORMAT, "churn", [fragments.Entry(record(0), 0, fragments.PREDICTIONS, 0, 0)], {}, "a"
    )
    assert fragments.encode_bounded(small) == [fragments.encode(small)]
    large = [fragments.Entry(embedded(i, 1024), i, fragments.PREDICTIONS, 0, i) for i in range(3)]
    messages = fragments.encode_bounded(
        fragments.Fragment(fragments.FORMAT, "churn", large, {}, "a"), max_bytes=3000
    )
    assert [len(fragments.decode(message).entries) for message in messages] == [1, 1, 1]


def test_entries_larger_than_the_first_still_keep_every_part_within_the_bound() -> None:
    # Parts are sized from the first entry: here it is the smallest by far, so the first cut is
    # over the bound and must be halved until it fits.
    entries = [fragments.Entry(record(0), 0, fragments.PREDICTIONS, 0, 0)] + [
        fragments.Entry(embedded(i, 256), i, fragments.PREDICTIONS, 0, i) for i in range(1, 40)
    ]
    fragment = fragments.Fragment(fragments.FORMAT, "churn", entries, {0: 1.0}, "agent-0")
    messages = fragments.encode_bounded(fragment, max_bytes=8_000)
    assert len(messages) > 1
    assert all(len(message) <= 8_000 for message in messages)
    parts = [fragments.decode(message).entries for message in messages]
    assert [entry for part in parts for entry in part] == entries
    # Each message is the plain encoding of a fragment of its entries: nothing else on the wire.
    assert messages == [
        fragments.encode(fragments.Fragment(fragments.FORMAT, "churn", part, {0: 1.0}, "agent-0"))
        for part in parts
    ]


def test_the_worker_writes_the_fragment_format_it_is_given() -> None:
    def worker_of(fragment_format: int) -> worker.IngestWorker:
        return worker.IngestWorker(
            parser=parsing.RecordParser(),
            labels_topic=None,
            join=None,
            producer="agent-0",
            max_fragment_records=10,
            fragment_format=fragment_format,
        )

    for fragment_format in fragments.FORMATS:
        ingest = worker_of(fragment_format)
        ingest.add_prediction(record(0), 0, 0)
        assert [fragment.format for fragment in ingest.take()] == [fragment_format]
    with pytest.raises(ValueError, match="fragment_format must be one of"):
        worker_of(4)


def rows_of(values: Sequence[tuple[object, ...]]) -> list[fragments.Entry]:
    layout = records.FeatureLayout(tuple(f"f{i}" for i in range(len(values[0]))))
    return [
        fragments.Entry(
            # Values of any type: what the parser never produces is tested too.
            msgspec.structs.replace(
                record(index),
                features=records.FeatureRow(layout, cast("tuple[records.WireFeatureValue, ...]", row)),
            ),
            index,
            fragments.PREDICTIONS,
            0,
            index,
        )
        for index, row in enumerate(values)
    ]


def test_rows_of_floats_travel_packed_and_read_back_as_the_same_floats() -> None:
    floats = [tuple(float(i) * 0.25 + j for j in range(20)) for i in range(5)]
    floats.append(tuple([1e308, -0.0, 5e-324, 123456.789, -1.5]) * 4)
    entries = rows_of(floats)
    fragment = fragments.Fragment(fragments.FORMAT, "churn", entries, {0: 1.0}, "agent-0")
    back = fragments.decode(fragments.encode(fragment))
    rows = [cast("records.FeatureRow", entry.record.features) for entry in back.entries]
    assert all(isinstance(row, records.FeatureRow) and row.packed is not None for row in rows)
    assert [row.ordered_values for row in rows] == floats
    assert all(type(value) is float for row in rows for value in row.values())
    assert back == fragment
    # Written as format 2 (streams.fragment_format: 2), the same rows go as values: what agents
    # that read only format 2 read.
    as_values = fragments.decode(fragments.encode(msgspec.structs.replace(fragment, format=2)))
    assert all(entry.record.features.packed is None for entry in as_values.entries)  # type: ignore[attr-defined]
    assert as_values.entries == fragment.entries
    # A packed row decoded here and published again stays packed, not unpacked and packed anew.
    again = fragments.decode(fragments.encode(back))
    assert [entry.record.features.packed for entry in again.entries] == [row.packed for row in rows]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "odd_one",
    [3, True, None, "a string", "8 chars!", 2**63 - 1, -(2**63), 1.0j, float("nan")],
    ids=repr,
)
def test_a_row_with_anything_but_floats_travels_as_its_values(odd_one: object) -> None:
    """An int, a bool, a null or a string (of 8 characters too: 9 bytes on the wire, as a float
    is) keeps its type; a NaN (never from the parser) is a float and may be packed."""
    row = (0.5, odd_one, 2.5)
    if isinstance(odd_one, complex):
        with pytest.raises(TypeError):  # msgpack has no complex numbers, packed or not
            float_rows.pack(row)
        return
    packed = float_rows.pack(row)
    assert (packed is not None) == (type(odd_one) is float)
    if packed is None:
        back = fragments.decode(
            fragments.encode(
                fragments.Fragment(fragments.FORMAT, "churn", rows_of([row]), {0: 1.0}, "agent-0")
            )
        )
        values = back.entries[0].record.features.ordered_values  # type: ignore[attr-defined]
        assert values == row and [type(v) for v in values] == [type(v) for v in row]


def test_bytes_that_are_not_packed_floats_are_refused() -> None:
    layout = records.FeatureLayout(("a", "b"))
    good = float_rows.pack((1.0, 2.0))
    assert good is not None
    assert records.FeatureRow.of_packed(layout, good).ordered_values == (1.0, 2.0)
    for bad in (good[:-1], good + b"\x00", b"\xcc" + good[1:], b""):
        with pytest.raises(ValueError, match="packed floats"):
            records.FeatureRow.of_packed(layout, bad)
    # In a fragment: refused as a fragment, never misread.
    wire = msgspec.msgpack.decode(
        fragments.encode(fragments.Fragment(fragments.FORMAT, "churn", rows_of([(1.0, 2.0)]), {}, "a"))
    )
    wire[2][0][0][5] = b"\xcb" + b"\x00" * 7  # 8 bytes for 2 values
    with pytest.raises(fragments.FragmentError, match="packed floats"):
        fragments.decode(msgspec.msgpack.encode(wire))

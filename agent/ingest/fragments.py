"""Window fragments: what the ingest stage publishes and the evaluate stage consumes.

Every agent ingests a share of the input partitions; the records of one model, wherever they
were ingested, meet at the one agent that owns the model's fragments partition. A fragment is a
batch of entries of one model, encoded as msgpack arrays (``PredictionRecord`` travels as it
is), tagged with a format number: a fragment of an unknown format is refused, never misread.

Each entry names the input message whose processing produced it (stream, partition, offset):
the evaluator drops an entry at or below the highest position it has already counted for that
stream and partition, so input that is ingested twice (a crash between publishing fragments
and committing input offsets, a rebalance) is never counted twice in a window.

On the wire (format 2) each distinct set of feature names travels once per message, and each
record's scalar features as a list of values in that order: the evaluator decodes them into a
``records.FeatureRow`` instead of a dict per record (at 200 features: about a third of the bytes,
and 8 us a record to decode against 24). Format 3 is format 2 where a record whose values are all
floats carries them packed in one bytes value (``float_rows``): the evaluator decodes no Python
float for it, and its window reads the packed rows as one numpy view. Formats 1 (a dict per
record) and 2 are still read, and written on request (``streams.fragment_format``).

A fragment is published as one or more messages of at most ``MAX_MESSAGE_BYTES`` each
(``encode_bounded``): wide records and embeddings (768 float32 components are 3 KiB a record)
would otherwise make a fragment of 2000 records several MiB, which a broker with Kafka's default
``message.max.bytes`` (1 MiB) refuses.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

import msgspec

from agent.ingest import float_rows, records

FORMAT = 3
# Written by earlier agents (each record's features as a dict; then as values, never packed);
# still read, so that fragments left in the topic across an upgrade are counted, and written on
# request (``streams.fragment_format``) while agents that read nothing else still run.
FORMAT_DICT_FEATURES: Final = 1
FORMAT_VALUES: Final = 2
FORMATS: Final = (FORMAT_DICT_FEATURES, FORMAT_VALUES, FORMAT)
# Under Kafka's default message.max.bytes (1048588) with room for the record's key and headers:
# the fragments topic then needs no broker or topic configuration.
MAX_MESSAGE_BYTES: Final = 1_000_000
# Which input stream an entry's position refers to.
PREDICTIONS = 0
LABELS = 1

Label = int | float | str


class FragmentError(ValueError):
    """Bytes that are not a fragment this agent can read (the message says why)."""


class Entry(msgspec.Struct, array_like=True, gc=False):
    record: records.PredictionRecord
    # Arrival index of the prediction: its offset in its input partition (replay: its line).
    index: int
    stream: int  # PREDICTIONS or LABELS: the message whose processing produced this entry
    partition: int
    offset: int
    labelled: bool = False
    label: Label | None = None


class Fragment(msgspec.Struct, array_like=True, gc=False):
    format: int
    model: str
    entries: list[Entry]
    # Input partition -> the latest event time the producer had seen there (for time windows).
    watermarks: dict[int, float]
    producer: str


# -- the wire form (formats 2 and 3) -----------------------------------------------------------------


class _WireRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """``PredictionRecord`` with its features as values in the order of ``layouts[layout]``
    (format 3: packed when they are all floats)."""

    request_id: str
    timestamp: float
    model_name: str
    model_version: str
    layout: Annotated[int, msgspec.Meta(ge=0)]
    values: tuple[records.WireFeatureValue, ...] | bytes
    prediction: float | str
    confidence: float | None
    probabilities: dict[str, float] | None
    latency_ms: float | None
    gpu_latency_ms: float | None
    status: str
    segment: dict[str, str] | None
    extra: dict[str, Any] | None
    embeddings: dict[str, bytes] | None


class _WireEntry(msgspec.Struct, array_like=True, gc=False):
    record: _WireRecord
    index: int
    stream: int
    partition: int
    offset: int
    labelled: bool
    label: Label | None


class _WireFragment(msgspec.Struct, array_like=True, gc=False):
    format: int
    model: str
    entries: list[_WireEntry]
    watermarks: dict[int, float]
    producer: str
    # Each distinct set of feature names in the message, in the order its records' values follow.
    layouts: list[tuple[str, ...]]


# A record's fields either side of its features, in order: the same in both forms.
_RECORD_FIELDS: Final = records.PredictionRecord.__struct_fields__
_FEATURES_AT: Final = _RECORD_FIELDS.index("features")
_BEFORE_FEATURES: Final = operator.attrgetter(*_RECORD_FIELDS[:_FEATURES_AT])
_AFTER_FEATURES: Final = operator.attrgetter(*_RECORD_FIELDS[_FEATURES_AT + 1 :])
if _WireRecord.__struct_fields__ != (
    *_RECORD_FIELDS[:_FEATURES_AT],
    "layout",
    "values",
    *_RECORD_FIELDS[_FEATURES_AT + 1 :],
):  # pragma: no cover - a field added to one form and not the other
    raise TypeError(
        "fragments._WireRecord must have PredictionRecord's fields, features as layout and values"
    )

_Picker = Callable[[Mapping[str, records.WireFeatureValue]], tuple[records.WireFeatureValue, ...]]


def _picker(names: tuple[str, ...]) -> _Picker:
    """The values of ``names`` from a feature map, in that order (KeyError when one is missing)."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        only = names[0]
        return lambda features: (features[only],)
    return lambda features: ()


class _LayoutTable:
    """Assigns each record's feature names to a layout of the message being encoded; with ``pack``
    (format 3), a row of floats only goes as its packed bytes."""

    def __init__(self, *, pack: bool) -> None:
        self._pack = pack
        self.layouts: list[tuple[str, ...]] = []
        self._numbers: dict[tuple[str, ...], int] = {}
        # The layout of the previous record: records of one model nearly always share it.
        self._last: tuple[int, int, _Picker] | None = None
        self._last_row_layout: records.FeatureLayout | None = None
        self._last_row_number = 0

    def values(
        self, features: Mapping[str, records.WireFeatureValue]
    ) -> tuple[int, tuple[records.WireFeatureValue, ...] | bytes]:
        if type(features) is records.FeatureRow:  # a row (parsed, or decoded): its values as they are
            layout = features.layout
            if layout is not self._last_row_layout:  # hashing 200 names is 1 us: once per layout
                self._last_row_layout, self._last_row_number = layout, self._number(layout.names)
            if self._pack and features.packed is not None:
                return self._last_row_number, features.packed
            return self._last_row_number, self._packed(features.ordered_values)
        last = self._last
        if last is not None and len(features) == last[1]:
            # As many names, and every one of the layout's present: the same set, whatever the order.
            try:
                return last[0], self._packed(last[2](features))
            except KeyError:
                pass
        names = tuple(features)
        number = self._number(names)
        picker = _picker(names)
        self._last = (number, len(names), picker)
        return number, self._packed(picker(features))

    def _packed(
        self, values: tuple[records.WireFeatureValue, ...]
    ) -> tuple[records.WireFeatureValue, ...] | bytes:
        """``values`` packed when this message packs and they are all floats; else as they are."""
        packed = float_rows.pack(values) if self._pack else None
        return values if packed is None else packed

    def _number(self, names: tuple[str, ...]) -> int:
        number = self._numbers.get(names)
        if number is None:
            number = self._numbers[names] = len(self.layouts)
            self.layouts.append(names)
        return number


def _to_wire(fragment: Fragment, *, pack: bool) -> _WireFragment:
    table = _LayoutTable(pack=pack)
    entries = []
    for entry in fragment.entries:
        record = entry.record
        layout, values = table.values(record.features)
        fields: tuple[Any, ...] = (*_BEFORE_FEATURES(record), layout, values, *_AFTER_FEATURES(record))
        wire = _WireRecord(*fields)
        entries.append(
            _WireEntry(
                wire, entry.index, entry.stream, entry.partition, entry.offset, entry.labelled, entry.label
            )
        )
    return _WireFragment(
        fragment.format, fragment.model, entries, fragment.watermarks, fragment.producer, table.layouts
    )


# Decoded layouts, shared by every fragment that names the same features: windows spanning many
# fragments then see one layout object (``reference.to_window`` takes their values as they are).
_KNOWN_LAYOUTS: dict[tuple[str, ...], records.FeatureLayout] = {}
_MAX_KNOWN_LAYOUTS: Final = 1024


def _layout(names: tuple[str, ...]) -> records.FeatureLayout:
    found = _KNOWN_LAYOUTS.get(names)
    if found is None:
        if len(_KNOWN_LAYOUTS) >= _MAX_KNOWN_LAYOUTS:
            _KNOWN_LAYOUTS.clear()  # records with ever-changing names: bounded, never wrong
        found = _KNOWN_LAYOUTS[names] = records.FeatureLayout(names)
    return found


def _from_wire(wire: _WireFragment) -> Fragment:
    layouts = [_layout(names) for names in wire.layouts]
    entries = []
    try:
        for entry in wire.entries:
            record = entry.record
            values = record.values
            features = (
                records.FeatureRow.of_packed(layouts[record.layout], values)
                if isinstance(values, bytes)
                else records.FeatureRow(layouts[record.layout], values)
            )
            fields: tuple[Any, ...] = (*_BEFORE_FEATURES(record), features, *_AFTER_FEATURES(record))
            entries.append(
                Entry(
                    records.PredictionRecord(*fields),
                    entry.index,
                    entry.stream,
                    entry.partition,
                    entry.offset,
                    entry.labelled,
                    entry.label,
                )
            )
    except (IndexError, ValueError) as exc:  # a layout number or a value count that does not fit
        raise FragmentError(f"not a window fragment: {exc}") from exc
    return Fragment(wire.format, wire.model, entries, wire.watermarks, wire.producer)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_WireFragment)
_DICT_FEATURES_DECODER = msgspec.msgpack.Decoder(Fragment)


_DICT_FEATURES_ENCODER = msgspec.msgpack.Encoder(enc_hook=records.encode_hook)


def encode(fragment: Fragment) -> bytes:
    """``fragment`` in its own format (``fragment.format``, one of ``FORMATS``)."""
    if fragment.format in (FORMAT, FORMAT_VALUES):
        return _ENCODER.encode(_to_wire(fragment, pack=fragment.format == FORMAT))
    if fragment.format == FORMAT_DICT_FEATURES:
        return _DICT_FEATURES_ENCODER.encode(fragment)
    raise ValueError(f"fragment format {fragment.format}: this agent writes formats {FORMATS}")


# Parts are sized from the fragment's first entry with this much of the bound to spare, so that
# entries a little larger than the first rarely push a part over it (which costs a re-encoding).
_PART_FILL: Final = 0.8


def encode_bounded(fragment: Fragment, max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """``fragment`` as messages of at most ``max_bytes`` each, its entries in order across them.

    The entries are cut into parts sized from the first entry's encoding, and each part is encoded
    once (with the layouts its own records use); a part that is still over the bound is halved and
    encoded again. An entry over the bound on its own travels alone (the input it came from was
    within ``kafka.max_message_bytes``). At 200 features, encoding is a tenth of the ingest stage's
    CPU: encoding a large fragment whole before cutting it would double that.
    """
    entries = fragment.entries
    if len(entries) <= 1:
        return [encode(fragment)]
    first = msgspec.structs.replace(fragment, entries=entries[:1])
    per_part = max(1, int(max_bytes * _PART_FILL) // len(encode(first)))
    if per_part >= len(entries):
        return _encode_part(fragment, max_bytes)
    encoded: list[bytes] = []
    for start in range(0, len(entries), per_part):
        part = msgspec.structs.replace(fragment, entries=entries[start : start + per_part])
        encoded.extend(_encode_part(part, max_bytes))
    return encoded


def _encode_part(part: Fragment, max_bytes: int) -> list[bytes]:
    raw = encode(part)
    entries = part.entries
    if len(raw) <= max_bytes or len(entries) <= 1:
        return [raw]
    half = len(entries) // 2
    return [
        *_encode_part(msgspec.structs.replace(part, entries=entries[:half]), max_bytes),
        *_encode_part(msgspec.structs.replace(part, entries=entries[half:]), max_bytes),
    ]


def decode(raw: bytes) -> Fragment:
    """A fragment of format 3 or 2, or of format 1 (each record's features as a dict)."""
    try:
        wire = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        return _decode_dict_features(raw, exc)
    if wire.format not in (FORMAT_VALUES, FORMAT):
        raise FragmentError(f"fragment format {wire.format}; this agent reads formats {FORMATS}")
    return _from_wire(wire)


def _decode_dict_features(raw: bytes, error: msgspec.DecodeError) -> Fragment:
    try:
        fragment = _DICT_FEATURES_DECODER.decode(raw)
    except msgspec.DecodeError:
        raise FragmentError(f"not a window fragment: {error}") from error
    if fragment.format != FORMAT_DICT_FEATURES:
        raise FragmentError(f"fragment format {fragment.format}; this agent reads formats {FORMATS}")
    return fragment


def partition_for(model: str, partitions: int) -> int:
    """The fragments (and state) partition of ``model``: stable across processes and restarts.

    Python's ``hash`` of a string changes per process; CRC-32 of the UTF-8 name does not.
    """
    return zlib.crc32(model.encode("utf-8")) % partitions

"""Window fragments: what the ingest stage publishes and the evaluate stage consumes.

Every agent ingests a share of the input partitions; the records of one model, wherever they
were ingested, meet at the one agent that owns the model's fragments partition. A fragment is a
batch of entries of one model, encoded as msgpack arrays (``PredictionRecord`` travels as it
is), tagged with a format number: a fragment of an unknown format is refused, never misread.

Each entry names the input message whose processing produced it (stream, partition, offset):
the evaluator drops an entry at or below the highest position it has already counted for that
stream and partition, so input that is ingested twice (a crash between publishing fragments
and committing input offsets, a rebalance) is never counted twice in a window.

A fragment is published as one or more messages of at most ``MAX_MESSAGE_BYTES`` each
(``encode_bounded``): wide records and embeddings (768 float32 components are 3 KiB a record)
would otherwise make a fragment of 2000 records several MiB, which a broker with Kafka's default
``message.max.bytes`` (1 MiB) refuses.
"""

from __future__ import annotations

import zlib
from typing import Final

import msgspec

from agent.ingest import records

FORMAT = 1
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


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Fragment)


def encode(fragment: Fragment) -> bytes:
    return _ENCODER.encode(fragment)


# Parts are sized from the fragment's first entry with this much of the bound to spare, so that
# entries a little larger than the first rarely push a part over it (which costs a re-encoding).
_PART_FILL: Final = 0.8


def encode_bounded(fragment: Fragment, max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """``fragment`` as messages of at most ``max_bytes`` each, its entries in order across them.

    The entries are cut into parts sized from the first entry's encoding, and each part is encoded
    once; a part that is still over the bound is halved and encoded again. An entry over the bound
    on its own travels alone (the input it came from was within ``kafka.max_message_bytes``). At
    200 features, encoding is a tenth of the ingest stage's CPU: encoding a large fragment whole
    before cutting it would double that.
    """
    entries = fragment.entries
    if len(entries) <= 1:
        return [_ENCODER.encode(fragment)]
    per_part = max(1, int(max_bytes * _PART_FILL) // len(_ENCODER.encode(entries[0])))
    if per_part >= len(entries):
        return _encode_part(fragment, max_bytes)
    encoded: list[bytes] = []
    for start in range(0, len(entries), per_part):
        part = msgspec.structs.replace(fragment, entries=entries[start : start + per_part])
        encoded.extend(_encode_part(part, max_bytes))
    return encoded


def _encode_part(part: Fragment, max_bytes: int) -> list[bytes]:
    raw = _ENCODER.encode(part)
    entries = part.entries
    if len(raw) <= max_bytes or len(entries) <= 1:
        return [raw]
    half = len(entries) // 2
    return [
        *_encode_part(msgspec.structs.replace(part, entries=entries[:half]), max_bytes),
        *_encode_part(msgspec.structs.replace(part, entries=entries[half:]), max_bytes),
    ]


def decode(raw: bytes) -> Fragment:
    try:
        fragment = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise FragmentError(f"not a window fragment: {exc}") from exc
    if fragment.format != FORMAT:
        raise FragmentError(f"fragment format {fragment.format}; this agent reads format {FORMAT}")
    return fragment


def partition_for(model: str, partitions: int) -> int:
    """The fragments (and state) partition of ``model``: stable across processes and restarts.

    Python's ``hash`` of a string changes per process; CRC-32 of the UTF-8 name does not.
    """
    return zlib.crc32(model.encode("utf-8")) % partitions

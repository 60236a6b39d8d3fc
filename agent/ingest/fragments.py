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

import math
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


def encode_bounded(fragment: Fragment, max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """``fragment`` as messages of at most ``max_bytes`` each, its entries in order across them.

    Split into as many equal runs of entries as the first encoding says, then halved again where a
    run is still over; an entry over the bound on its own travels alone (the input it came from was
    within ``kafka.max_message_bytes``).
    """
    raw = _ENCODER.encode(fragment)
    entries = fragment.entries
    if len(raw) <= max_bytes or len(entries) <= 1:
        return [raw]
    # At least two parts: the encoding is over the bound and holds at least two entries.
    parts = min(len(entries), math.ceil(len(raw) / max_bytes))
    size = math.ceil(len(entries) / parts)
    encoded: list[bytes] = []
    for start in range(0, len(entries), size):
        part = msgspec.structs.replace(fragment, entries=entries[start : start + size])
        encoded.extend(encode_bounded(part, max_bytes))
    return encoded


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

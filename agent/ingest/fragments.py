"""Window fragments: what the ingest stage publishes and the evaluate stage consumes.

Every agent ingests a share of the input partitions; the records of one model, wherever they
were ingested, meet at the one agent that owns the model's fragments partition. A fragment is a
batch of entries of one model, encoded as msgpack arrays (``PredictionRecord`` travels as it
is), tagged with a format number: a fragment of an unknown format is refused, never misread.

Each entry names the input message whose processing produced it (stream, partition, offset):
the evaluator drops an entry at or below the highest position it has already counted for that
stream and partition, so input that is ingested twice (a crash between publishing fragments
and committing input offsets, a rebalance) is never counted twice in a window.
"""

from __future__ import annotations

import zlib

import msgspec

from agent.ingest import records

FORMAT = 1
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

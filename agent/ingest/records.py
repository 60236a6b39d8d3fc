"""Prediction-log and label records (README, "The prediction-log record"): types and reasons.

``parsing.RecordParser`` turns messages into these records, or a ``Rejected`` that names the
field, what was expected and what came.

Contract (field paths come from ``settings.FieldMappingSettings``; dotted paths such as
``meta.id`` walk nested objects):

- ``request_id`` non-empty string; ``model_name`` non-empty string; ``model_version`` non-empty
  string (an integer is accepted and converted, registries number their versions).
- ``timestamp``: epoch seconds (a number, not a bool) or an RFC 3339 string with a UTC offset
  (``2024-05-01T12:00:00Z``, ``...+02:00``); stored as epoch seconds.
- ``features``: object of name -> number | string | bool | null, or a non-empty list of finite
  numbers (a vector feature, an embedding). NaN and Infinity (which Python's ``json`` accepts as
  tokens) are rejected as ``non_finite``.
- ``embeddings``: optional top-level object of name -> non-empty list of finite numbers; the same
  namespace as the vectors under ``features`` (a name in both is ``invalid_value``). Vectors are
  kept in ``embeddings`` as float32 bytes (``agent.ingest.vectors``); each one's dimension is
  fixed by the reference.
- ``prediction``: number or string (a bool is read as 1.0 / 0.0).
- ``probabilities`` (object class -> number in [0, 1]) and ``confidence`` (number in [0, 1]),
  both optional; without ``confidence`` it is ``max(probabilities)``.
- ``latency_ms``, ``gpu_latency_ms``: optional finite numbers >= 0.
- ``status``: optional, ``"ok"`` (default) or ``"error"``.
- ``segment``: optional object of string values.
- Any other top-level field goes to ``extra``: never fatal.

Label records: ``request_id``, ``timestamp`` and ``label`` (number, string or bool).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Mapping
from typing import Any, Final, cast

import msgspec

from agent.ingest import float_rows

FeatureValue = float | str | bool | None
# What a scalar feature holds on the wire: int kept apart from float, so that a categorical "3"
# does not come back as "3.0".
WireFeatureValue = int | float | str | bool | None

# Rejection reasons: the dead-letter topic and the rejection counter are labelled with these.
MALFORMED_JSON: Final = "malformed_json"
WRONG_TYPE: Final = "wrong_type"
NON_FINITE: Final = "non_finite"
MISSING_FIELD: Final = "missing_field"
OVERSIZE: Final = "oversize"
INVALID_VALUE: Final = "invalid_value"
# The record made the agent's own code raise (a bug, or an input no check foresaw): dead-lettered
# with the exception, so it is committed past instead of met again after every restart.
PROCESSING_ERROR: Final = "processing_error"
REJECT_REASONS: Final = (
    MALFORMED_JSON,
    WRONG_TYPE,
    NON_FINITE,
    MISSING_FIELD,
    OVERSIZE,
    INVALID_VALUE,
    PROCESSING_ERROR,
)

# Epoch seconds beyond this (year 5138) are almost surely milliseconds or microseconds.
MAX_EPOCH_SECONDS: Final = 1e11


class PredictionRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One validated prediction-log record.

    A msgspec Struct: built as cheaply as a slotted class, and encoded to (and decoded from) the
    window fragments the agents exchange through Kafka as a compact msgpack array, with no
    conversion on either side. ``gc=False``: records hold no reference cycles.
    """

    request_id: str
    timestamp: float  # epoch seconds (RFC 3339 inputs are converted)
    model_name: str
    model_version: str
    # A dict as parsed; a ``FeatureRow`` once it has travelled in a fragment (no dict per record).
    features: Mapping[str, WireFeatureValue]
    prediction: float | str
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    latency_ms: float | None = None
    gpu_latency_ms: float | None = None
    status: str = "ok"  # "ok" | "error"
    segment: dict[str, str] | None = None
    # Unknown top-level fields, kept out of the way (never fatal).
    extra: dict[str, Any] | None = None
    # Vector features, name -> float32 little-endian bytes (``vectors.as_array`` reads one). The
    # last field, with a default: fragments and state written before vectors existed still decode.
    embeddings: dict[str, bytes] | None = None


class FeatureLayout:
    """Feature names in one order, shared by every ``FeatureRow`` that has them (compared by identity)."""

    __slots__ = ("names", "positions")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.positions = {name: position for position, name in enumerate(names)}

    def __repr__(self) -> str:
        return f"FeatureLayout({len(self.names)} names)"


class FeatureRow(Mapping[str, WireFeatureValue]):
    """A record's scalar features as values in its layout's order: a read-only mapping.

    A fragment carries each distinct set of feature names once and every record's values in order
    (``agent.ingest.fragments``). Decoding them into a dict per record cost more than parsing the
    JSON did (200 keys: about 20 us a record); a row shares its layout's names and index, and
    ``reference.to_window`` takes its values as they are. A row of floats only may come packed
    (``float_rows``, ``packed``): its values are unpacked the first time they are asked for, and a
    window reads the packed rows without unpacking them.
    """

    __slots__ = ("_values", "layout", "packed")

    def __init__(self, layout: FeatureLayout, values: tuple[WireFeatureValue, ...]) -> None:
        if len(values) != len(layout.names):
            raise ValueError(f"{len(values)} feature values for a layout of {len(layout.names)} names")
        self.layout = layout
        self._values: tuple[WireFeatureValue, ...] | None = values
        self.packed: bytes | None = None

    @classmethod
    def of_packed(cls, layout: FeatureLayout, packed: bytes) -> FeatureRow:
        """A row of ``float_rows.pack``'s bytes (ValueError when they are not that many floats)."""
        if not float_rows.is_packed(packed, len(layout.names)):
            raise ValueError(f"{len(packed)} bytes are not {len(layout.names)} packed floats")
        row = cls.__new__(cls)
        row.layout = layout
        row._values = None
        row.packed = packed
        return row

    @property
    def ordered_values(self) -> tuple[WireFeatureValue, ...]:
        values = self._values
        if values is None:
            # Built with values, or packed (``of_packed``): one of the two is always there.
            values = self._values = float_rows.unpack(cast("bytes", self.packed))
        return values

    def __getitem__(self, name: str) -> WireFeatureValue:
        return self.ordered_values[self.layout.positions[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.names)

    def __len__(self) -> int:
        return len(self.layout.names)

    def __repr__(self) -> str:
        return f"FeatureRow({dict(self)!r})"


def feature_dict(features: Mapping[str, WireFeatureValue]) -> dict[str, WireFeatureValue]:
    """A record's scalar features as a new dict (a row's in one zip, not a lookup per name)."""
    if isinstance(features, FeatureRow):
        return dict(zip(features.layout.names, features.ordered_values, strict=True))
    return dict(features)


def encode_hook(value: object) -> object:
    """msgspec ``enc_hook`` for encoders that may meet a decoded record: a row travels as a dict."""
    if isinstance(value, FeatureRow):
        return feature_dict(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class LabelRecord:
    request_id: str
    timestamp: float
    label: float | str


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed validation: goes to the dead-letter topic with ``reason``."""

    reason: str  # one of REJECT_REASONS
    detail: str  # human-readable: names the field and what was expected
    raw: bytes


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; ``ValueError`` if it is not one (or has no offset)."""
    parsed = datetime.datetime.fromisoformat(text.upper() if "z" in text or "t" in text else text)
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return parsed.timestamp()

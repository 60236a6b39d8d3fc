"""A row of float features packed as bytes: how fragments carry records whose values are all floats.

At 200 features the evaluator spent about 9 us a record decoding a row's values into Python
floats and 5 more putting them into the window's numpy columns (``bench.ingest_wide``). A row
whose values are all Python floats travels instead as one bytes value: each float as msgpack
writes it (the marker byte 0xcb, then 8 bytes big-endian). Packing is msgpack's own encoding of
the values, checked: the row packs only when it is exactly 9 bytes a value and every value starts
with the float marker, so an int (``3``, not ``3.0``), a bool, a string or a null keeps the row a
tuple, and a categorical ``3`` never comes back as ``3.0``. A window then reads the rows of a
fragment as one numpy view (``as_matrix``): no Python float per value on the evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

_FLOAT_MARKER: Final = b"\xcb"  # msgpack float 64
VALUE_BYTES: Final = 9
# One packed value: its marker, then the big-endian float64 (unaligned: numpy reads it as is).
_PACKED: Final = np.dtype([("marker", "u1"), ("value", ">f8")])
# msgpack array headers are 1 (fewer than 16 items), 3 or 5 bytes.
_HEADER_SIZES: Final = frozenset({1, 3, 5})
_ENCODER: Final = msgspec.msgpack.Encoder()


def pack(values: Sequence[object]) -> bytes | None:
    """``values`` packed (9 bytes each), or None when one is not a Python float."""
    count = len(values)
    if not count:
        return None
    encoded = _ENCODER.encode(values)
    header = len(encoded) - VALUE_BYTES * count
    # Every value 9 bytes and each one's first byte the float marker: all floats, nothing else.
    if header not in _HEADER_SIZES or encoded[header::VALUE_BYTES] != _FLOAT_MARKER * count:
        return None
    return encoded[header:]


def is_packed(packed: bytes, count: int) -> bool:
    """Whether ``packed`` holds ``count`` packed floats (what a fragment from elsewhere must)."""
    return len(packed) == VALUE_BYTES * count and packed[::VALUE_BYTES] == _FLOAT_MARKER * count


def unpack(packed: bytes) -> tuple[float, ...]:
    """The floats of one packed row."""
    values: list[float] = np.frombuffer(packed, dtype=_PACKED)["value"].tolist()
    return tuple(values)


def as_matrix(rows: Sequence[bytes], width: int) -> npt.NDArray[np.float64]:
    """Packed rows of ``width`` values each as a (row, value) float64 matrix (native byte order)."""
    joined = b"".join(rows)
    return np.frombuffer(joined, dtype=_PACKED)["value"].astype(np.float64).reshape(len(rows), width)

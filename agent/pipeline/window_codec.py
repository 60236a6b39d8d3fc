"""A columnar ``Window`` as plain data (msgpack-ready), and back.

Float columns travel as their raw float64 bytes, object columns (strings, None) as lists, vector
features as their raw float32 bytes with their dimension; the decoded window holds equal arrays.
Used for the state an evaluator keeps between processes (the first labelled window, when it
serves as the labelled reference) and for the windows the canary feed shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from agent.ingest import vectors as vectors_mod
from detectors import window as window_mod

_FLOAT = "f8"
_OBJECT = "obj"


class Column(msgspec.Struct, array_like=True, gc=False):
    kind: str  # "f8" or "obj"
    floats: bytes = b""
    objects: list[Any] | None = None


class Matrix(msgspec.Struct, array_like=True, gc=False):
    """A vector feature's rows: float32 little-endian, row after row."""

    dimension: int
    floats: bytes


def _matrix(values: window_mod.VectorArray) -> Matrix:
    return Matrix(
        int(values.shape[1]), np.ascontiguousarray(values, dtype=vectors_mod.VECTOR_DTYPE).tobytes()
    )


def _vectors(matrix: Matrix) -> window_mod.VectorArray:
    if matrix.dimension < 1 or len(matrix.floats) % (matrix.dimension * vectors_mod.VECTOR_DTYPE.itemsize):
        raise ValueError(
            f"vector rows of {len(matrix.floats)} bytes do not split by dimension {matrix.dimension}"
        )
    flat = np.frombuffer(matrix.floats, dtype=vectors_mod.VECTOR_DTYPE)
    return flat.reshape(-1, matrix.dimension).astype(np.float32)


class WindowData(msgspec.Struct, array_like=True, gc=False):
    features: dict[str, Column]
    optional: dict[str, Column]  # predictions, confidences, labels, latency_ms, ... when present
    model_version: str | None
    segment: dict[str, str] | None
    last_record_index: int
    # Window.fields as (absent, mistyped, unknown); absent in state written before it existed.
    fields: tuple[dict[str, int], dict[str, int], dict[str, int]] | None = None
    # Window.vectors; absent in state written before vectors existed.
    vectors: dict[str, Matrix] | None = None


# Every per-row array of a Window besides its features.
_OPTIONAL = window_mod.ROW_ARRAYS


def _column(values: window_mod.Column) -> Column:
    if values.dtype == np.float64:
        return Column(_FLOAT, floats=np.ascontiguousarray(values).tobytes())
    return Column(_OBJECT, objects=list(values))


def _array(column: Column) -> window_mod.Column:
    if column.kind == _FLOAT:
        return np.frombuffer(column.floats, dtype=np.float64).copy()
    if column.kind == _OBJECT:
        array = np.empty(len(column.objects or ()), dtype=object)
        array[:] = column.objects or []
        return array
    raise ValueError(f"unknown column kind {column.kind!r}")


def encode(window: window_mod.Window) -> WindowData:
    optional: dict[str, Column] = {}
    for name in _OPTIONAL:
        values = getattr(window, name)
        if values is not None:
            optional[name] = _column(values)
    return WindowData(
        features={name: _column(values) for name, values in window.features.items()},
        optional=optional,
        model_version=window.model_version,
        segment=dict(window.segment) if window.segment is not None else None,
        last_record_index=window.last_record_index,
        fields=(
            (dict(fields.absent), dict(fields.mistyped), dict(fields.unknown))
            if (fields := window.fields) is not None
            else None
        ),
        vectors={name: _matrix(values) for name, values in window.vectors.items()} or None,
    )


def decode(data: WindowData) -> window_mod.Window:
    optional: Mapping[str, Any] = {name: _array(column) for name, column in data.optional.items()}
    return window_mod.Window(
        features={name: _array(column) for name, column in data.features.items()},
        vectors={name: _vectors(matrix) for name, matrix in (data.vectors or {}).items()},
        model_version=data.model_version,
        segment=data.segment,
        last_record_index=data.last_record_index,
        fields=window_mod.FieldCounts(*data.fields) if data.fields is not None else None,
        **optional,
    )

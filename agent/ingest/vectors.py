"""Vector features (embeddings): checked, converted to float32 bytes, and held to the reference's shape.

A record carries a vector feature as a JSON list of numbers under ``features`` or as a value of
the top-level ``embeddings`` object (name -> list); both spellings share one namespace. A vector is
stored in ``PredictionRecord.embeddings`` as float32 little-endian bytes (``np.frombuffer(b,
VECTOR_DTYPE)`` reads it back): four bytes a component in memory and in the fragments, instead of
a Python float object (24 bytes) and a list slot (8 bytes) each.

The conversion is numpy's (one C pass converts, one checks finiteness); Python walks the elements
only to name the offending one when a vector is refused.

``VectorShapes`` is what the reference fixes: each vector's dimension, and which names are scalar
features. A parser given one refuses a record whose vector has another dimension, a vector where
the reference has a scalar, or a scalar where it has a vector, naming the field and both shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from agent.ingest import field_checks, records

# Float32, little-endian whatever the host: the bytes travel between agents.
VECTOR_DTYPE: Final = np.dtype("<f4")
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
# Top-level field of the record holding name -> vector (not remapped: it has no mapping entry).
EMBEDDINGS_FIELD: Final = "embeddings"
_NUMBER_TYPES: Final = frozenset({float, int})
# What a vector feature's value may be: JSON lists, and tuples and arrays from adapters and files.
VECTOR_TYPES: Final = frozenset({list, tuple, np.ndarray})


def as_array(vector: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The float32 components of a stored vector (a read-only view of the bytes, no copy)."""
    return np.frombuffer(vector, dtype=VECTOR_DTYPE)


def dimension(vector: bytes) -> int:
    return len(vector) // VECTOR_DTYPE.itemsize


def to_bytes(values: Any, path: str, *, floats: bool = False) -> bytes:
    """A vector (list of finite numbers, or a numeric numpy array) as float32 bytes.

    ``floats``: the caller's decoder already made every element a finite float (msgspec's typed
    decode), so the per-element type pass (a third of the cost at 768 dimensions) is skipped.
    Raises ``FieldError`` naming ``path`` (and the element, as ``path[17]``) and what was expected.
    """
    if isinstance(values, np.ndarray):
        return _array_bytes(values, path)
    if type(values) is not list and type(values) is not tuple:
        raise field_checks.FieldError(
            records.WRONG_TYPE,
            f"field '{path}': expected a list of numbers (a vector), got "
            f"{field_checks.type_name(values)} {field_checks.show(values)}",
        )
    if not values:
        raise field_checks.FieldError(
            records.INVALID_VALUE, f"field '{path}': expected a non-empty list of numbers (a vector), got []"
        )
    if not floats and not _NUMBER_TYPES.issuperset(map(type, values)):
        raise _element_error(values, path)
    try:
        # A number beyond float32 becomes an infinity, refused below: no warning wanted.
        with np.errstate(over="ignore"):
            converted = np.fromiter(values, dtype=VECTOR_DTYPE, count=len(values))  # ~15 % under asarray
    except OverflowError:  # an int beyond float64
        raise _element_error(values, path) from None
    if not np.isfinite(converted).all():
        raise _element_error(values, path)
    return converted.tobytes()


def _array_bytes(values: np.ndarray[Any, Any], path: str) -> bytes:
    """An adapter's numpy vector: one dimension of numbers (bool refused, as in JSON)."""
    if values.ndim != 1 or values.dtype.kind not in "iuf" or not values.size:
        raise field_checks.FieldError(
            records.WRONG_TYPE,
            f"field '{path}': expected a non-empty 1-D array of numbers (a vector), got "
            f"{values.ndim}-D {values.dtype} of {values.size} values",
        )
    with np.errstate(over="ignore"):
        converted = values.astype(VECTOR_DTYPE)
    if not np.isfinite(converted).all():
        raise _element_error(values.tolist(), path)
    return converted.tobytes()


def _element_error(values: list[Any] | tuple[Any, ...], path: str) -> field_checks.FieldError:
    """The first element that is no finite float32 number, named by its index."""
    for index, value in enumerate(values):
        where = f"field '{path}[{index}]'"
        if type(value) not in _NUMBER_TYPES:
            return field_checks.FieldError(
                records.WRONG_TYPE,
                f"{where}: expected a number (vectors hold numbers only), got "
                f"{field_checks.type_name(value)} {field_checks.show(value)}",
            )
        if not field_checks.is_finite(value):
            return field_checks.FieldError(
                records.NON_FINITE, f"{where}: expected a finite number, got {field_checks.show(value)}"
            )
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            return field_checks.FieldError(
                records.INVALID_VALUE,
                f"{where}: expected a number within float32 range (|x| <= {FLOAT32_MAX:.4g}), "
                f"got {field_checks.show(value)}",
            )
    raise AssertionError("_element_error called without a bad element")


@dataclasses.dataclass(frozen=True)
class VectorShapes:
    """What the reference fixes: each vector feature's dimension, and the scalar feature names."""

    dims: Mapping[str, int]
    scalars: frozenset[str] = frozenset()

    @property
    def expects_vectors(self) -> bool:
        return bool(self.dims)

    def check_vector(self, name: str, vector: bytes, path: str) -> None:
        """A vector ``name`` read at ``path`` has the reference's dimension, or ``FieldError``."""
        expected = self.dims.get(name)
        if expected is None:
            if name in self.scalars:
                raise field_checks.FieldError(
                    records.WRONG_TYPE,
                    f"field '{path}': expected a scalar (the reference has '{name}' as a number, string, "
                    f"bool or null), got a vector of {dimension(vector)} numbers",
                )
            return  # a vector the reference never had: counted as a new field in the windows
        found = dimension(vector)
        if found != expected:
            raise field_checks.FieldError(
                records.INVALID_VALUE,
                f"field '{path}': expected a vector of {expected} numbers (its dimension in the "
                f"reference), got {found}",
            )

    def check_scalars(self, features: Mapping[str, Any], features_path: str) -> None:
        """No scalar feature is one the reference has as a vector, or ``FieldError``."""
        if self.dims.keys().isdisjoint(features):
            return
        for name in features:
            expected = self.dims.get(name)
            value = features[name]
            if expected is not None and value is not None:
                raise field_checks.FieldError(
                    records.WRONG_TYPE,
                    f"field '{features_path}.{name}': expected a vector of {expected} numbers (the "
                    f"reference has '{name}' as a vector), got {field_checks.type_name(value)} "
                    f"{field_checks.show(value)}",
                )


class ShapeLearner:
    """Learns ``VectorShapes`` from reference records, first seen wins.

    ``refusal`` says why a later record disagrees with what came before (another dimension, a
    vector where earlier rows had a scalar or the reverse): the reference must fix one shape.
    """

    def __init__(self) -> None:
        self._dims: dict[str, int] = {}
        self._scalars: set[str] = set()

    def refusal(self, record: records.PredictionRecord, features_path: str) -> field_checks.FieldError | None:
        """None (and the record's shapes learned) when it agrees with the earlier records."""
        embeddings = record.embeddings or {}
        shapes = VectorShapes(self._dims, frozenset(self._scalars))
        try:
            for name, vector in embeddings.items():
                shapes.check_vector(name, vector, name)
            shapes.check_scalars(record.features, features_path)
        except field_checks.FieldError as exc:
            return exc
        for name, vector in embeddings.items():
            self._dims.setdefault(name, dimension(vector))
        self._scalars.update(name for name, value in record.features.items() if value is not None)
        return None

    def shapes(self) -> VectorShapes:
        return VectorShapes(dict(self._dims), frozenset(self._scalars))


def split(
    features: Mapping[str, Any],
    embeddings: object,
    features_path: str,
    shapes: VectorShapes | None,
    *,
    floats: bool = False,
) -> tuple[Mapping[str, Any], dict[str, bytes] | None]:
    """Scalar features apart from vectors: lists under ``features`` and the ``embeddings`` object.

    Returns the scalar features (``features`` itself when it held no list) and name -> float32
    bytes (None when the record has no vector). Raises ``FieldError`` naming the field.
    ``floats``: every vector element is known to be a finite float already (``to_bytes``).
    """
    vectors: dict[str, bytes] = {}
    scalars: Mapping[str, Any] = features
    if not VECTOR_TYPES.isdisjoint(map(type, features.values())):
        only_scalars: dict[str, Any] = {}
        for name, value in features.items():
            if type(value) in VECTOR_TYPES:
                vectors[name] = to_bytes(value, f"{features_path}.{name}", floats=floats)
            else:
                only_scalars[name] = value
        scalars = only_scalars
    if embeddings is not None:
        if not isinstance(embeddings, Mapping):
            raise field_checks.FieldError(
                records.WRONG_TYPE,
                f"field '{EMBEDDINGS_FIELD}': expected an object of name -> list of numbers, got "
                f"{field_checks.type_name(embeddings)} {field_checks.show(embeddings)}",
            )
        for name, value in embeddings.items():
            path = f"{EMBEDDINGS_FIELD}.{name}"
            if name in vectors or name in scalars:
                raise field_checks.FieldError(
                    records.INVALID_VALUE,
                    f"field '{path}': '{name}' is also a feature under '{features_path}'; vectors and "
                    "features share one namespace, give it one place",
                )
            vectors[name] = to_bytes(value, path, floats=floats)
    if shapes is not None:
        for name, vector in vectors.items():
            path = f"{features_path}.{name}" if name in features else f"{EMBEDDINGS_FIELD}.{name}"
            shapes.check_vector(name, vector, path)
        shapes.check_scalars(scalars, features_path)
    return scalars, vectors or None

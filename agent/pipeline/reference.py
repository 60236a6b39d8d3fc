"""Reference data: the feature schema and columnarisation into a ``Window``.

Loading reference files and MLflow artifacts is ``agent.pipeline.reference_files``.

``to_window`` is the one place where records become the columnar ``Window`` detectors see, for
reference data and for live windows alike, so both are built by the same rules:

- numeric feature -> float64, NaN where the record lacks it or has null; a bool is 1.0 / 0.0;
  a numeric string such as ``"1.5"`` is read as its number; any other string is NaN and counted
  in ``ColumnStats.type_mismatches``.
- categorical feature -> object array of ``str``, ``None`` where missing; numbers and bools in a
  categorical column are turned into their JSON text (``3``, ``0.5``, ``true``).
- features that the schema does not know are counted in ``ColumnStats.unknown_features`` and
  left out of the columns (never fatal).
- what the columns cannot show is counted per feature in ``Window.fields``: records lacking a
  schema feature, values of the wrong type, fields the schema does not know (the data-quality
  checks read it); ``Window.request_ids`` keeps the records' ids.
- vector feature (an embedding) -> ``Window.vectors[name]``, rows x dimension float32, the
  dimension fixed by the reference; a NaN row where the record lacks the vector (counted absent)
  or carries another dimension (counted mistyped: a parser given the reference's shapes refuses
  such a record before it gets here, but a reference collected from the stream comes too late
  for that). A vector the schema does not know is counted unknown, like an unknown feature.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt

from agent.ingest import float_rows
from agent.ingest import records as records_mod
from agent.ingest import vectors as vectors_mod
from detectors import window as window_mod

log = logging.getLogger(__name__)

Kind = Literal["numeric", "categorical"]
NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"

_NUMBER_TYPES: Final = frozenset({float, int, bool})
_FLOAT_FIELD_NAMES: Final = ("timestamp", "confidence", "latency_ms", "gpu_latency_ms")
_FLOAT_FIELDS: Final = operator.attrgetter(*_FLOAT_FIELD_NAMES)


class ReferenceError(Exception):
    """Reference data could not be loaded; the message names the file and what to fix."""


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    """Ordered feature names and the kind of each, fixed from the reference data."""

    names: tuple[str, ...]
    kinds: tuple[Kind, ...]
    # Vector features (embeddings): (name, dimension), in first-seen order; none by default.
    vectors: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.names) != len(self.kinds):
            raise ValueError(f"FeatureSchema: {len(self.names)} names but {len(self.kinds)} kinds")
        if len(set(self.names)) != len(self.names):
            raise ValueError("FeatureSchema: feature names must be unique")
        for name, kind in zip(self.names, self.kinds, strict=True):
            if kind not in (NUMERIC, CATEGORICAL):
                raise ValueError(
                    f"FeatureSchema: feature {name!r} has kind {kind!r}; use numeric or categorical"
                )
        vector_names = [name for name, _ in self.vectors]
        if len(set(vector_names)) != len(vector_names) or not set(vector_names).isdisjoint(self.names):
            raise ValueError("FeatureSchema: vector names must be unique and differ from the feature names")
        for name, dimension in self.vectors:
            if dimension < 1:
                raise ValueError(f"FeatureSchema: vector {name!r} has dimension {dimension}; use >= 1")

    @classmethod
    def infer(cls, records: Iterable[records_mod.PredictionRecord]) -> FeatureSchema:
        """Names in first-seen order; numeric when every non-null value is a number or bool.

        A vector's dimension is the first one seen (reference files refuse rows that disagree,
        ``reference_files``); a name seen both as a scalar and as a vector stays a scalar.
        """
        categorical: dict[str, bool] = {}
        dimensions: dict[str, int] = {}
        for record in records:
            if record.embeddings:
                for name, vector in record.embeddings.items():
                    dimensions.setdefault(name, vectors_mod.dimension(vector))
            for name, value in records_mod.feature_dict(record.features).items():
                if value is None:
                    categorical.setdefault(name, False)
                elif type(value) not in _NUMBER_TYPES:
                    categorical[name] = True
                else:
                    categorical.setdefault(name, False)
        names = tuple(categorical)
        kinds: tuple[Kind, ...] = tuple(CATEGORICAL if categorical[name] else NUMERIC for name in names)
        both = sorted(set(dimensions).intersection(names))
        if both:
            log.warning("reference: %s both scalar and vector features; read as scalars", ", ".join(both))
        return cls(names, kinds, tuple((n, d) for n, d in dimensions.items() if n not in categorical))

    @property
    def vector_shapes(self) -> vectors_mod.VectorShapes:
        """What a parser holds records to (``parsing.RecordParser.with_shapes``)."""
        return vectors_mod.VectorShapes(dict(self.vectors), frozenset(self.names))

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(name for name, kind in zip(self.names, self.kinds, strict=True) if kind == NUMERIC)

    @property
    def categorical_names(self) -> tuple[str, ...]:
        return tuple(name for name, kind in zip(self.names, self.kinds, strict=True) if kind == CATEGORICAL)

    def kind_of(self, name: str) -> Kind | None:
        for known, kind in zip(self.names, self.kinds, strict=True):
            if known == name:
                return kind
        return None


@dataclasses.dataclass
class ColumnStats:
    """Counts of values that ``to_window`` could not take as they came (for metrics)."""

    unknown_features: int = 0  # feature values whose name the schema does not know (ignored)
    type_mismatches: int = 0  # a string in a numeric column (read as NaN)


# -- columnarisation -------------------------------------------------------------------------------


def to_window(
    records: Sequence[records_mod.PredictionRecord],
    schema: FeatureSchema,
    *,
    last_record_index: int = -1,
    labels: Sequence[float | str | None] | None = None,
    model_version: str | None = None,
    segment: Mapping[str, str] | None = None,
    stats: ColumnStats | None = None,
) -> window_mod.Window:
    """Records -> one columnar ``Window`` (the rules are in the module docstring).

    ``labels``, when given, is aligned with ``records`` (None where a record has no label).
    """
    stats = stats if stats is not None else ColumnStats()
    size = len(records)
    ordered, fields = _feature_columns([record.features for record in records], schema, stats)
    vector_columns, fields = _vector_columns([record.embeddings for record in records], schema, stats, fields)

    # One C-level attrgetter call per record and one conversion for the four float fields,
    # instead of a Python pass per field. A float field the parser let through as None is NaN.
    timestamps, confidences, latency, gpu_latency = _numeric_matrix(
        list(map(_FLOAT_FIELDS, records)), len(_FLOAT_FIELD_NAMES), ColumnStats()
    )
    predictions = [record.prediction for record in records]
    statuses = [record.status for record in records]
    errors = np.zeros(size, dtype=np.float64)
    if "error" in statuses:
        errors[[i for i, status in enumerate(statuses) if status == "error"]] = 1.0
    return window_mod.Window(
        features=ordered,
        vectors=vector_columns,
        predictions=_value_column(predictions) if size else None,
        confidences=_unless_all_nan(confidences),
        labels=_value_column(labels) if labels is not None and _any_value(labels) else None,
        latency_ms=_unless_all_nan(latency),
        gpu_latency_ms=_unless_all_nan(gpu_latency),
        errors=errors,
        timestamps=timestamps,
        request_ids=np.fromiter((record.request_id for record in records), dtype=object, count=size),
        fields=fields,
        model_version=model_version,
        segment=segment,
        last_record_index=last_record_index,
    )


def _feature_columns(
    feature_maps: list[Mapping[str, records_mod.FeatureValue]], schema: FeatureSchema, stats: ColumnStats
) -> tuple[dict[str, window_mod.Column], window_mod.FieldCounts]:
    columns: dict[str, window_mod.Column] = {}
    complete = True
    mistyped: dict[str, int] = {}
    numeric = schema.numeric_names
    if numeric:
        packed = _packed_matrix(feature_maps, numeric)
        if packed is not None:  # rows of floats only, with every schema name: nothing to count
            matrix, wrong = packed, None
        else:
            rows, has_all = _rows(feature_maps, numeric)
            complete = complete and has_all
            matrix, wrong = _numeric_matrix_counted(rows, len(numeric))
        columns.update(zip(numeric, matrix, strict=True))
        if wrong is not None:
            mistyped = {name: int(n) for name, n in zip(numeric, wrong, strict=True) if n}
            stats.type_mismatches += sum(mistyped.values())
    categorical = schema.categorical_names
    if categorical:
        rows, has_all = _rows(feature_maps, categorical)
        complete = complete and has_all
        by_feature = zip(*rows, strict=True) if rows else (() for _ in categorical)
        columns.update(
            (name, _categorical_column(values)) for name, values in zip(categorical, by_feature, strict=True)
        )
    names = schema.names
    absent: dict[str, int] = {}
    if complete:
        known = len(names) * len(feature_maps)
    else:
        present = collections.Counter(name for features in feature_maps for name in features)
        known = sum(present[name] for name in names)
        absent = {
            name: len(feature_maps) - present[name] for name in names if present[name] < len(feature_maps)
        }
    unknown_values = sum(map(len, feature_maps)) - known
    stats.unknown_features += unknown_values
    unknown: dict[str, int] = {}
    if unknown_values:
        schema_names = frozenset(names)
        unknown = dict(
            collections.Counter(
                name for features in feature_maps for name in features if name not in schema_names
            )
        )
    ordered = {name: columns[name] for name in names}
    return ordered, window_mod.FieldCounts(absent=absent, mistyped=mistyped, unknown=unknown)


def _vector_columns(
    embeddings: list[dict[str, bytes] | None],
    schema: FeatureSchema,
    stats: ColumnStats,
    fields: window_mod.FieldCounts,
) -> tuple[dict[str, window_mod.VectorArray], window_mod.FieldCounts]:
    """The schema's vectors as rows x dimension float32 (NaN rows where missing), and the field
    counts with the vectors' absent, mistyped and unknown records added."""
    if not schema.vectors and all(vectors is None for vectors in embeddings):
        return {}, fields  # the usual scalar-only window: nothing to do
    size = len(embeddings)
    absent = dict(fields.absent)
    mistyped = dict(fields.mistyped)
    unknown = dict(fields.unknown)
    columns: dict[str, window_mod.VectorArray] = {}
    for name, dimension in schema.vectors:
        blobs = [vectors.get(name) if vectors is not None else None for vectors in embeddings]
        width = dimension * vectors_mod.VECTOR_DTYPE.itemsize
        if all(blob is not None and len(blob) == width for blob in blobs):
            # One join and one conversion for the whole window (astype: writable, native order).
            joined = b"".join(blob for blob in blobs if blob is not None)
            columns[name] = (
                np.frombuffer(joined, dtype=vectors_mod.VECTOR_DTYPE)
                .reshape(size, dimension)
                .astype(np.float32)
            )
            continue
        matrix = np.full((size, dimension), np.nan, dtype=np.float32)
        lacking = wrong = 0
        for row, blob in enumerate(blobs):
            if blob is None:
                lacking += 1
            elif len(blob) != width:
                wrong += 1
            else:
                matrix[row] = vectors_mod.as_array(blob)
        if lacking:
            absent[name] = lacking
        if wrong:
            mistyped[name] = wrong
            stats.type_mismatches += wrong
        columns[name] = matrix
    known = {name for name, _ in schema.vectors}
    others = collections.Counter(
        name for vectors in embeddings if vectors is not None for name in vectors if name not in known
    )
    if others:
        stats.unknown_features += sum(others.values())
        for name, count in others.items():
            unknown[name] = unknown.get(name, 0) + count
    return columns, window_mod.FieldCounts(absent=absent, mistyped=mistyped, unknown=unknown)


def _packed_matrix(
    feature_maps: list[Mapping[str, records_mod.FeatureValue]], names: tuple[str, ...]
) -> window_mod.FloatArray | None:
    """The (feature, record) block of ``names`` when every record is a packed row of one layout
    that has them all (fragments of format 3: floats only, finite as the parser let them through),
    read from the packed bytes without a Python float per value; else None."""
    first = feature_maps[0] if feature_maps else None
    if type(first) is not records_mod.FeatureRow or first.packed is None:
        return None
    layout = first.layout
    packed: list[bytes] = []
    for features in feature_maps:
        if type(features) is not records_mod.FeatureRow or features.layout is not layout:
            return None
        row = features.packed
        if row is None:
            return None
        packed.append(row)
    found = layout.positions
    if not all(name in found for name in names):
        return None
    matrix = float_rows.as_matrix(packed, len(layout.names))
    if layout.names != names:
        matrix = matrix[:, np.array([found[name] for name in names], dtype=np.intp)]
    return np.ascontiguousarray(matrix.T)


def _rows(
    feature_maps: list[Mapping[str, records_mod.FeatureValue]], names: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], bool]:
    """The values of ``names`` per record; the flag says whether every record had all of them."""
    if feature_maps and all(type(features) is records_mod.FeatureRow for features in feature_maps):
        return _row_values(cast("list[records_mod.FeatureRow]", feature_maps), names)
    # One C-level itemgetter call per record instead of one dict lookup per feature: the fast
    # path when every record carries every schema feature (the usual case).
    if len(names) == 1:
        only = names[0]
        try:
            return [(features[only],) for features in feature_maps], True
        except KeyError:
            return [(features.get(only),) for features in feature_maps], False
    getter = operator.itemgetter(*names)
    try:
        return list(map(getter, feature_maps)), True
    except KeyError:
        return [tuple(features.get(name) for name in names) for features in feature_maps], False


def _row_values(
    rows: list[records_mod.FeatureRow], names: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], bool]:
    """``_rows`` of records decoded from fragments: their values taken as they are when their layout
    is the schema's order (the usual case), else picked by position; None where a name is lacking."""
    pickers: dict[records_mod.FeatureLayout, Callable[[tuple[Any, ...]], tuple[Any, ...]]] = {}
    complete = True
    values: list[tuple[Any, ...]] = []
    for row in rows:
        picker = pickers.get(row.layout)
        if picker is None:
            picker, has_all = _position_picker(row.layout, names)
            pickers[row.layout] = picker
            complete = complete and has_all
        values.append(picker(row.ordered_values))
    return values, complete


def _position_picker(
    layout: records_mod.FeatureLayout, names: tuple[str, ...]
) -> tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], bool]:
    """What takes ``names``' values from a row of ``layout``, and whether the layout has them all."""
    if layout.names == names:
        return (lambda values: values), True
    positions = [layout.positions.get(name) for name in names]
    if any(position is None for position in positions):
        return (lambda values: tuple(None if at is None else values[at] for at in positions)), False
    if len(positions) == 1:
        only = positions[0]
        return (lambda values: (values[only],)), True
    return operator.itemgetter(*positions), True


def _numeric_matrix(rows: list[tuple[Any, ...]], width: int, stats: ColumnStats) -> window_mod.FloatArray:
    """A (feature, record) float64 block: row ``j`` is feature ``j``'s column, contiguous."""
    matrix, wrong = _numeric_matrix_counted(rows, width)
    if wrong is not None:
        stats.type_mismatches += int(wrong.sum())
    return matrix


def _numeric_matrix_counted(
    rows: list[tuple[Any, ...]], width: int
) -> tuple[window_mod.FloatArray, npt.NDArray[np.int64] | None]:
    """``_numeric_matrix`` and, when some value was not a number, the count per column (else None)."""
    size = len(rows)
    wrong = None
    try:
        # Fastest when every value is a number or bool (no None, no string).
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=size * width)
        matrix = flat.reshape(size, width)
    except (ValueError, TypeError, OverflowError):
        try:
            # None -> NaN comes with numpy's array conversion (so does "1.5" -> 1.5).
            matrix = np.array(rows, dtype=np.float64).reshape(size, width)
        except (ValueError, TypeError, OverflowError):
            matrix, wrong = _numeric_matrix_slow(rows, width)
    # The parser lets only finite numbers through, so an infinity here was a string ("inf",
    # "1e999") that numpy converted: a value of the wrong type, like any other non-number.
    infinite = np.isinf(matrix)
    if infinite.any():
        matrix[infinite] = np.nan
        counted = infinite.sum(axis=0)
        wrong = counted if wrong is None else wrong + counted
    return np.ascontiguousarray(matrix.T), wrong


def _numeric_matrix_slow(
    rows: list[tuple[Any, ...]], width: int
) -> tuple[window_mod.FloatArray, npt.NDArray[np.int64]]:
    matrix = np.full((len(rows), width), np.nan, dtype=np.float64)
    wrong = np.zeros(width, dtype=np.int64)
    for row_index, row in enumerate(rows):
        for column, value in enumerate(row):
            number = _as_number(value)
            if number is not None:
                matrix[row_index, column] = number
            elif value is not None:
                wrong[column] += 1
    return matrix, wrong


def _as_number(value: object) -> float | None:
    """A float for numbers, bools and numeric strings; None for anything else (and infinities)."""
    if not isinstance(value, bool | int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _categorical_text(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, int | float) else str(value)


def _categorical_column(values: Sequence[Any]) -> window_mod.ObjectArray:
    if not set(map(type, values)) <= {str, type(None)}:
        values = [_categorical_text(value) for value in values]
    return np.fromiter(values, dtype=object, count=len(values))


def _value_column(values: Sequence[Any]) -> window_mod.Column:
    """Predictions or labels: float64 when all are numbers (NaN for None), else object."""
    if set(map(type, values)) <= {float, int, bool, type(None)}:
        return np.array(values, dtype=np.float64)
    return np.fromiter(values, dtype=object, count=len(values))


def _unless_all_nan(column: window_mod.FloatArray) -> window_mod.FloatArray | None:
    """None for an optional field no record carried (the parser never lets NaN through)."""
    return None if np.isnan(column).all() else column


def _any_value(values: Sequence[object]) -> bool:
    return any(value is not None for value in values)


class ReferenceCollector:
    """``reference.source = first_n``: keeps the first ``n`` valid records seen."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"reference.first_n must be >= 1, got {n}")
        self.n = n
        self._records: list[records_mod.PredictionRecord] = []

    @property
    def complete(self) -> bool:
        return len(self._records) >= self.n

    def add(self, record: records_mod.PredictionRecord) -> bool:
        """Keep ``record`` if room is left; True once the reference is complete."""
        if len(self._records) < self.n:
            self._records.append(record)
        return len(self._records) >= self.n

    def records(self) -> list[records_mod.PredictionRecord]:
        """The records kept so far, in arrival order (a copy)."""
        return list(self._records)

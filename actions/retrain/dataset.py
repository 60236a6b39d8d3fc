"""The retrain's input: labelled rows, column by column, with a fingerprint and a Parquet form.

The agent turns its recent joined records (prediction + label) into ``TrainingRow`` objects;
this package never sees the agent's own types. Columns mirror ``detectors.window.Window``: a
feature column is float64 (numbers and bools; NaN = missing) or object (strings; None = missing).

Parquet layout (the file a user's own training command receives, and the reference file):
``request_id``, ``timestamp``, ``label``, ``feature.<name>`` per feature, ``segment.<name>`` per
slice attribute, and optionally ``served_prediction`` / ``served_score`` (what the serving model
answered: the baseline the performance gate compares against).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
Column = FloatArray | ObjectArray
FeatureValue = float | str | bool | None
LabelValue = float | str

FEATURE_PREFIX = "feature."
SEGMENT_PREFIX = "segment."
REQUEST_ID = "request_id"
TIMESTAMP = "timestamp"
LABEL = "label"
SERVED_PREDICTION = "served_prediction"
SERVED_SCORE = "served_score"


class DatasetError(ValueError):
    """The rows or file cannot form a training set; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class TrainingRow:
    """One prediction joined with its label, as the agent hands it over."""

    request_id: str
    timestamp: float
    features: Mapping[str, FeatureValue]
    label: LabelValue
    segment: Mapping[str, str] | None = None
    # What the serving model predicted for this request, and (binary) its positive-class score.
    served_prediction: float | str | None = None
    served_score: float | None = None


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """Labelled rows, columnar. Every array has length ``size``; treat it as immutable."""

    features: Mapping[str, Column]
    labels: Column
    request_ids: ObjectArray
    timestamps: FloatArray
    segments: Mapping[str, ObjectArray] = dataclasses.field(default_factory=dict)
    served_predictions: Column | None = None
    served_scores: FloatArray | None = None

    def __post_init__(self) -> None:
        size = len(self.labels)
        named: list[tuple[str, Any]] = [
            ("request_ids", self.request_ids),
            ("timestamps", self.timestamps),
            ("served_predictions", self.served_predictions),
            ("served_scores", self.served_scores),
        ]
        named += [(f"features[{name!r}]", column) for name, column in self.features.items()]
        named += [(f"segments[{name!r}]", column) for name, column in self.segments.items()]
        for field, column in named:
            if column is not None and len(column) != size:
                raise DatasetError(
                    f"{field} has {len(column)} rows but labels has {size}: columns must align"
                )

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def feature_names(self) -> list[str]:
        return sorted(self.features)

    def take(self, indices: npt.NDArray[np.intp] | Sequence[int]) -> TrainingSet:
        """The rows at ``indices``, in that order."""
        index = np.asarray(indices, dtype=np.intp)
        return TrainingSet(
            features={name: column[index] for name, column in self.features.items()},
            labels=self.labels[index],
            request_ids=self.request_ids[index],
            timestamps=self.timestamps[index],
            segments={name: column[index] for name, column in self.segments.items()},
            served_predictions=None if self.served_predictions is None else self.served_predictions[index],
            served_scores=None if self.served_scores is None else self.served_scores[index],
        )

    def fingerprint(self) -> str:
        """sha256 over ids and values in a canonical order: equal data, equal fingerprint."""
        digest = hashlib.sha256()
        _hash_column(digest, REQUEST_ID, self.request_ids)
        _hash_column(digest, TIMESTAMP, self.timestamps)
        _hash_column(digest, LABEL, self.labels)
        for name in sorted(self.features):
            _hash_column(digest, FEATURE_PREFIX + name, self.features[name])
        for name in sorted(self.segments):
            _hash_column(digest, SEGMENT_PREFIX + name, self.segments[name])
        return digest.hexdigest()

    # -- Parquet ---------------------------------------------------------------------------------

    def to_parquet(self, path: pathlib.Path) -> None:
        import pyarrow as pa  # noqa: PLC0415 - only the runners that stage files pay for pyarrow
        from pyarrow import parquet  # noqa: PLC0415

        columns: dict[str, Any] = {
            REQUEST_ID: pa.array(list(self.request_ids), type=pa.string()),
            TIMESTAMP: pa.array(self.timestamps, type=pa.float64()),
            LABEL: _arrow_column(self.labels),
        }
        for name in sorted(self.features):
            columns[FEATURE_PREFIX + name] = _arrow_column(self.features[name])
        for name in sorted(self.segments):
            columns[SEGMENT_PREFIX + name] = pa.array(list(self.segments[name]), type=pa.string())
        if self.served_predictions is not None:
            columns[SERVED_PREDICTION] = _arrow_column(self.served_predictions)
        if self.served_scores is not None:
            columns[SERVED_SCORE] = pa.array(self.served_scores, type=pa.float64())
        parquet.write_table(pa.table(columns), str(path))

    @classmethod
    def from_parquet(cls, path: pathlib.Path) -> TrainingSet:
        from pyarrow import parquet  # noqa: PLC0415

        try:
            table = parquet.read_table(str(path))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read training data {path}: {exc}") from exc
        data = {name: table.column(name).to_pylist() for name in table.column_names}
        return from_columns(data, source=str(path))


def from_rows(rows: Iterable[TrainingRow]) -> TrainingSet:
    """Columns from rows. A feature is numeric unless some row carries a string for it."""
    materialised = list(rows)
    feature_names = sorted({name for row in materialised for name in row.features})
    segment_names = sorted({name for row in materialised for name in (row.segment or {})})
    features = {
        name: _column([row.features.get(name) for row in materialised], f"features[{name!r}]")
        for name in feature_names
    }
    segments = {
        name: np.array([str((row.segment or {}).get(name, "")) for row in materialised], dtype=object)
        for name in segment_names
    }
    served = [row.served_prediction for row in materialised]
    scores = [row.served_score for row in materialised]
    return TrainingSet(
        features=features,
        labels=_label_column([row.label for row in materialised]),
        request_ids=np.array([row.request_id for row in materialised], dtype=object),
        timestamps=np.array([row.timestamp for row in materialised], dtype=np.float64),
        segments=segments,
        served_predictions=None if all(v is None for v in served) else _column(served, "served_prediction"),
        served_scores=None
        if all(v is None for v in scores)
        else np.array([math.nan if v is None else float(v) for v in scores], dtype=np.float64),
    )


def from_columns(data: Mapping[str, Sequence[Any]], *, source: str = "columns") -> TrainingSet:
    """A training set from named columns in the Parquet layout (see the module docstring)."""
    for required in (REQUEST_ID, LABEL):
        if required not in data:
            raise DatasetError(
                f"{source}: column {required!r} is missing; columns are {REQUEST_ID}, {TIMESTAMP}, {LABEL}, "
                f"{FEATURE_PREFIX}<name>..., {SEGMENT_PREFIX}<name>..."
            )
    size = len(data[LABEL])
    features = {
        name.removeprefix(FEATURE_PREFIX): _column(list(values), name)
        for name, values in data.items()
        if name.startswith(FEATURE_PREFIX)
    }
    if not features:
        raise DatasetError(f"{source}: no feature columns; name them {FEATURE_PREFIX}<feature name>")
    timestamps = data.get(TIMESTAMP)
    served = data.get(SERVED_PREDICTION)
    scores = data.get(SERVED_SCORE)
    return TrainingSet(
        features=features,
        labels=_label_column(list(data[LABEL])),
        request_ids=np.array([str(value) for value in data[REQUEST_ID]], dtype=object),
        timestamps=np.zeros(size) if timestamps is None else _float_array(timestamps, TIMESTAMP),
        segments={
            name.removeprefix(SEGMENT_PREFIX): np.array(
                ["" if v is None else str(v) for v in values], dtype=object
            )
            for name, values in data.items()
            if name.startswith(SEGMENT_PREFIX)
        },
        served_predictions=None if served is None else _column(list(served), SERVED_PREDICTION),
        served_scores=None if scores is None else _float_array(scores, SERVED_SCORE),
    )


def concat(parts: Sequence[TrainingSet]) -> TrainingSet:
    """Rows of every part, in order. A column a part lacks reads as missing in its rows."""
    if not parts:
        raise DatasetError("nothing to concatenate: no training rows at all")
    if len(parts) == 1:
        return parts[0]
    feature_names = sorted({name for part in parts for name in part.features})
    segment_names = sorted({name for part in parts for name in part.segments})
    served = [part.served_predictions for part in parts]
    scores = [part.served_scores for part in parts]
    return TrainingSet(
        features={
            name: _joined([part.features.get(name) for part in parts], parts) for name in feature_names
        },
        labels=_joined([part.labels for part in parts], parts),
        request_ids=np.concatenate([part.request_ids for part in parts]),
        timestamps=np.concatenate([part.timestamps for part in parts]),
        segments={
            name: np.concatenate(
                [part.segments.get(name, np.full(part.size, "", dtype=object)) for part in parts]
            )
            for name in segment_names
        },
        served_predictions=None if all(c is None for c in served) else _joined(served, parts),
        served_scores=None
        if all(c is None for c in scores)
        else np.concatenate(
            [np.full(p.size, math.nan) if c is None else c for c, p in zip(scores, parts, strict=True)]
        ),
    )


def _joined(columns: Sequence[Column | None], parts: Sequence[TrainingSet]) -> Column:
    """One column from per-part pieces (None = absent); any string piece makes it a string column."""
    if any(column is not None and column.dtype == object for column in columns):
        pieces = [
            np.full(part.size, None, dtype=object) if column is None else _as_object(column)
            for column, part in zip(columns, parts, strict=True)
        ]
        return np.concatenate(pieces)
    return np.concatenate(
        [
            np.full(part.size, math.nan) if column is None else column
            for column, part in zip(columns, parts, strict=True)
        ]
    ).astype(np.float64)


def _as_object(column: Column) -> ObjectArray:
    if column.dtype == object:
        return column.astype(object)
    return np.array([None if math.isnan(value) else value for value in column.tolist()], dtype=object)


def label_key(value: Any) -> str:
    """Classification labels compare as text: 1, 1.0 and "1" are the same class."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- helpers ---------------------------------------------------------------------------------------


def _column(values: Sequence[Any], field: str) -> Column:
    if any(isinstance(value, str) for value in values):
        return np.array([None if value is None else str(value) for value in values], dtype=object)
    return _float_array(values, field)


def _float_array(values: Sequence[Any], field: str) -> FloatArray:
    try:
        return np.array([math.nan if value is None else float(value) for value in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{field}: values must be numbers, strings or null ({exc})") from exc


def _label_column(values: Sequence[Any]) -> Column:
    column = _column(values, LABEL)
    missing = [
        i
        for i, value in enumerate(column)
        if value is None or (isinstance(value, float) and math.isnan(value))
    ]
    if missing:
        raise DatasetError(
            f"label is missing in {len(missing)} row(s) (first at row {missing[0]}): "
            "only predictions joined with their label can be trained on"
        )
    return column


def _arrow_column(column: Column) -> Any:
    import pyarrow as pa  # noqa: PLC0415

    if column.dtype == object:
        return pa.array([None if value is None else str(value) for value in column], type=pa.string())
    return pa.array(column, type=pa.float64())


def _hash_column(digest: Any, name: str, column: Column) -> None:
    digest.update(name.encode() + b"\x00")
    if column.dtype == object:
        for value in column:
            digest.update(b"\x01" if value is None else b"\x02" + str(value).encode() + b"\x00")
    else:
        # Little-endian float64 bytes: the same values hash the same on any machine.
        digest.update(np.ascontiguousarray(column, dtype="<f8").tobytes())

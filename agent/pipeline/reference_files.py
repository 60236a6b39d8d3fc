"""Reference files and MLflow artifacts, read into validated prediction records.

Reference files (``load_records``) hold one record per row in the prediction-log layout:

- ``.jsonl`` / ``.json``: one JSON record a line (a ``.json`` file may also be one JSON array of
  records).
- ``.csv`` / ``.parquet``: one record a row; columns are named as the contract's fields after the
  field mapping (``request_id``, ``timestamp``, ``model_name``, ``model_version``, ``prediction``,
  ``confidence``, ``latency_ms``, ...). Features are either columns named ``features.<name>`` (one
  per feature; ``<features path>.<name>`` under a custom mapping) or one column ``features`` holding a
  JSON object as text (Parquet may also hold a struct/map column). Other dotted columns become
  nested objects (``segment.region`` -> ``{"segment": {"region": ...}}``). An empty cell is null.
  A Parquet timestamp column is read as epoch seconds.

A plain feature table (CSV/Parquet with one column per feature, as a validation set is kept)
works too: when there is no ``request_id`` column and no ``features`` column(s), every column that
is no contract field (``prediction``, ``confidence``, ``label``, ``timestamp``, ... after the
mapping) is a feature; ``prediction`` is required (the model's output on each row). Example:
``config/reference-example.csv``.

A row may also carry its ground truth under the mapping's ``label`` path (``label`` by default):
the reference then has a realised performance, which CBPE needs as its baseline and label-joined
windows are compared with (without one, the first label-joined window serves). A row with an
invalid label is rejected like any invalid row.

Vector features (embeddings) come as in the stream: a list of numbers under ``features`` or in the
``embeddings`` object (JSON); in CSV, a ``features.<name>`` or ``embeddings.<name>`` cell holding
a JSON list (``[0.1, 0.2]``); in Parquet, also a list column. The reference fixes each vector's
dimension: the first row carrying it sets it, and a later row with another dimension (or a vector
where earlier rows had a scalar, or the reverse) is rejected like any invalid row.
``LoadResult.shapes`` is what the stream's records are then held to.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import operator
import pathlib
import random
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

import numpy as np

from agent import settings as settings_mod
from agent.ingest import parsing, vectors
from agent.ingest import records as records_mod
from agent.pipeline.reference import ReferenceError

log = logging.getLogger(__name__)

_REPORTED_REJECTIONS: Final = 5


Label = float | str | None


@dataclasses.dataclass
class LoadResult:
    records: list[records_mod.PredictionRecord]
    labels: list[Label] = dataclasses.field(default_factory=list)  # aligned with records
    rows: int = 0  # rows read from the file
    rejected: int = 0  # rows that failed validation (skipped)
    first_rejections: list[str] = dataclasses.field(default_factory=list)  # "row N: reason: detail"
    sampled: bool = False  # more valid rows than max_rows: a seeded uniform sample was kept
    # Each vector's dimension and the scalar feature names, from every valid row (not only the sample).
    shapes: vectors.VectorShapes = dataclasses.field(default_factory=lambda: vectors.VectorShapes({}))


class _Reservoir:
    """A seeded uniform sample of at most ``capacity`` items, returned in arrival order."""

    def __init__(self, capacity: int | None, seed: int) -> None:
        self.capacity = capacity
        self.seen = 0
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not security
        self._items: list[tuple[int, tuple[records_mod.PredictionRecord, Label]]] = []

    def offer(self, record: tuple[records_mod.PredictionRecord, Label]) -> None:
        position = self.seen
        self.seen += 1
        if self.capacity is None or len(self._items) < self.capacity:
            self._items.append((position, record))
            return
        slot = self._rng.randrange(self.seen)  # Algorithm R
        if slot < self.capacity:
            self._items[slot] = (position, record)

    def items(self) -> list[tuple[records_mod.PredictionRecord, Label]]:
        return [record for _, record in sorted(self._items, key=operator.itemgetter(0))]


# Reference file suffix -> how it is read.
SUFFIXES: dict[str, Literal["json", "csv", "parquet"]] = {
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_records(
    path: pathlib.Path | str,
    parser: parsing.RecordParser,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Read and validate every row of a reference file; invalid rows are counted and skipped."""
    path = pathlib.Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ReferenceError(
            f"reference file {path}: unknown suffix {path.suffix!r}; use one of {', '.join(SUFFIXES)}"
        )
    rows: Iterator[Any] = _json_rows(path) if kind == "json" else _frame_rows(path, parser, kind)
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    reservoir = _Reservoir(max_rows, seed)
    learner = vectors.ShapeLearner()
    result = LoadResult(records=[])
    for row_number, row in enumerate(rows, start=1):
        result.rows += 1
        parsed = _labelled_row(parser, row)
        if not isinstance(parsed, records_mod.Rejected):
            refusal = learner.refusal(parsed[0], str(parser.mapping.features))
            if refusal is not None:
                parsed = records_mod.Rejected(refusal.reason, refusal.detail, b"")
        if isinstance(parsed, records_mod.Rejected):
            result.rejected += 1
            if len(result.first_rejections) < _REPORTED_REJECTIONS:
                result.first_rejections.append(f"row {row_number}: {parsed.reason}: {parsed.detail}")
            continue
        reservoir.offer(parsed)
    kept = reservoir.items()
    result.records = [record for record, _ in kept]
    result.labels = [label for _, label in kept]
    result.sampled = max_rows is not None and reservoir.seen > max_rows
    result.shapes = learner.shapes()
    return result


def _labelled_row(
    parser: parsing.RecordParser, row: Any
) -> tuple[records_mod.PredictionRecord, Label] | records_mod.Rejected:
    """A row's record and its label (None when it carries none), or why the row is refused."""
    record = parser.parse_prediction(row) if isinstance(row, bytes) else parser.parse_prediction_obj(row)
    if isinstance(record, records_mod.Rejected):
        return record
    label = parser.reference_label(row)
    return label if isinstance(label, records_mod.Rejected) else (record, label)


def load_records(
    path: pathlib.Path | str,
    parser: parsing.RecordParser,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> list[records_mod.PredictionRecord]:
    """Valid records of a reference file (``load_labelled`` without the labels)."""
    return load_labelled(path, parser, max_rows=max_rows, seed=seed).records


def load_labelled(
    path: pathlib.Path | str,
    parser: parsing.RecordParser,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Valid records of a reference file and their labels (layout in the module docstring).

    Invalid rows are skipped and logged with the first reasons; a file with no valid row is an
    error. Beyond ``max_rows`` valid rows, a uniform sample seeded by ``seed`` is kept (in file
    order), so a given file always yields the same reference.
    """
    result = read_records(path, parser, max_rows=max_rows, seed=seed)
    if result.rejected:
        log.warning(
            "reference file %s: %d of %d rows rejected and left out of the reference; first: %s. "
            "Fix those rows (README, Reference files) or ignore this if they are few",
            path,
            result.rejected,
            result.rows,
            "; ".join(result.first_rejections),
        )
    if not result.records:
        detail = (
            f"; first rejections: {'; '.join(result.first_rejections)}" if result.first_rejections else ""
        )
        raise ReferenceError(f"reference file {path}: no valid record in {result.rows} rows{detail}")
    if result.sampled:
        log.info("reference file %s: kept a seeded sample of %d records", path, len(result.records))
    return result


def load_from_mlflow(
    run_id: str,
    artifact_path: str,
    tracking_uri: str | None,
    parser: parsing.RecordParser,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Download a reference artifact of an MLflow run, then ``load_labelled`` it."""
    import mlflow.artifacts  # noqa: PLC0415 - heavy import (seconds), only for source=mlflow
    import mlflow.exceptions  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="drift-agent-reference-") as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=scratch, tracking_uri=tracking_uri
            )
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise ReferenceError(
                f"cannot download artifact {artifact_path!r} of MLflow run {run_id!r} from {tracking_uri}: "
                f"{exc}; check reference.mlflow_run_id and reference.mlflow_artifact_path"
            ) from exc
        return load_labelled(pathlib.Path(local), parser, max_rows=max_rows, seed=seed)


def load_reference(
    config: settings_mod.ReferenceSettings, tracking_uri: str | None, parser: parsing.RecordParser
) -> LoadResult | None:
    """Reference records (and labels) from a file or MLflow; None means "collect the first N records"."""
    if config.source == "file":
        if config.path is None:
            raise settings_mod.ConfigError("reference.path: required when reference.source is 'file'")
        return load_labelled(config.path, parser, max_rows=config.max_rows)
    if config.source == "mlflow":
        if config.mlflow_run_id is None or tracking_uri is None:
            raise settings_mod.ConfigError(
                "reference.mlflow_run_id and registry.tracking_uri: both required when "
                "reference.source is 'mlflow'"
            )
        return load_from_mlflow(config.mlflow_run_id, config.mlflow_artifact_path, tracking_uri, parser)
    return None


# -- file readers ----------------------------------------------------------------------------------


def _json_rows(path: pathlib.Path) -> Iterator[Any]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReferenceError(f"cannot read reference file {path}: {exc.strerror}") from exc
    with handle:
        head = handle.read(64).lstrip()
        handle.seek(0)
        if head.startswith(b"["):
            try:
                document = json.load(handle)
            except ValueError as exc:
                raise ReferenceError(f"reference file {path}: not a valid JSON array: {exc}") from exc
            yield from document
            return
        for line in handle:
            if line.strip():
                yield line


def _frame_rows(path: pathlib.Path, parser: parsing.RecordParser, kind: str) -> Iterator[dict[str, Any]]:
    import pandas as pd  # noqa: PLC0415 - only file references need it

    string_columns = {
        str(getattr(parser.mapping, name)) for name in ("request_id", "model_name", "model_version", "status")
    }
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype={column: str for column in string_columns}, keep_default_na=True)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # pandas' and pyarrow's read errors share no narrower base
        raise ReferenceError(f"cannot read reference file {path} as {kind}: {exc}") from exc
    columns = {str(name): _column_values(frame[name]) for name in frame.columns}
    features_prefix = f"{parser.mapping.features}."
    if _plain_table(columns, parser.mapping):
        yield from _plain_rows(path, columns, parser.mapping, features_prefix)
        return
    for position in range(len(frame)):
        yield _row_object({name: values[position] for name, values in columns.items()}, features_prefix)


def _plain_table(columns: Mapping[str, Any], mapping: settings_mod.FieldMappingSettings) -> bool:
    """One column per feature, as data scientists keep a validation set: no record layout at all."""
    prefix = f"{mapping.features}."
    return mapping.request_id not in columns and not any(
        name == mapping.features or name.startswith(prefix) for name in columns
    )


def _plain_rows(
    path: pathlib.Path,
    columns: Mapping[str, list[Any]],
    mapping: settings_mod.FieldMappingSettings,
    features_prefix: str,
) -> Iterator[dict[str, Any]]:
    """Records from a plain feature table: every column that is no contract field is a feature.

    Rows get the ids ``reference-<row>``; a missing timestamp is 0 (a reference has no time).
    """
    if mapping.prediction not in columns:
        raise ReferenceError(
            f"reference file {path}: a plain feature table (one column per feature) needs a "
            f"{mapping.prediction!r} column with the model's output on each row (or set mapping.prediction "
            f"to its name); columns found: {', '.join(list(columns)[:12])}"
        )
    contract = {
        getattr(mapping, field)
        for field in (
            "timestamp",
            "model_name",
            "model_version",
            "prediction",
            "confidence",
            "probabilities",
            "latency_ms",
            "gpu_latency_ms",
            "status",
            "label",
        )
    }
    segment_prefix = f"{mapping.segment}."
    feature_names = [n for n in columns if n not in contract and not n.startswith(segment_prefix)]
    rows = len(next(iter(columns.values()), []))
    for position in range(rows):
        row = {name: values[position] for name, values in columns.items() if name not in feature_names}
        row.update({features_prefix + name: columns[name][position] for name in feature_names})
        row.setdefault(mapping.request_id, f"reference-{position}")
        row.setdefault(mapping.timestamp, 0.0)
        row.setdefault(mapping.model_name, "reference")
        row.setdefault(mapping.model_version, "reference")
        yield _row_object(row, features_prefix)


def _column_values(series: Any) -> list[Any]:
    """A pandas column as native Python values, None for empty cells."""
    import pandas as pd  # noqa: PLC0415

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        seconds = series.map(lambda stamp: None if pd.isna(stamp) else stamp.timestamp())
        return list(seconds.astype(object))
    values = series.astype(object).where(series.notna(), None).tolist()
    return [value.item() if isinstance(value, np.generic) else value for value in values]


def _row_object(row: Mapping[str, Any], features_prefix: str) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    features: dict[str, Any] = {}
    for column, cell in row.items():
        value = cell.tolist() if isinstance(cell, np.ndarray) else cell
        if column.startswith(features_prefix):
            # The rest is the feature name verbatim: feature names may contain dots themselves.
            features[column[len(features_prefix) :]] = _vector_cell(value)
            continue
        if isinstance(value, str) and column == features_prefix[:-1]:
            value = _json_cell(value)
        elif column.startswith(_EMBEDDINGS_PREFIX):
            value = _vector_cell(value)
        _set_path(obj, column.split("."), value)
    if features:
        _set_path(obj, features_prefix[:-1].split("."), features)
    return obj


_EMBEDDINGS_PREFIX: Final = f"{vectors.EMBEDDINGS_FIELD}."


def _vector_cell(value: Any) -> Any:
    """A CSV cell holding a JSON list (a vector) as that list; any other value as it is."""
    if isinstance(value, str) and value.startswith("["):
        decoded = _json_cell(value)
        if isinstance(decoded, list):
            return decoded
    return value


def _json_cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # the parser then rejects it as wrong_type, naming the field


def _set_path(obj: dict[str, Any], parts: list[str], value: Any) -> None:
    node = obj
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return  # an empty cell of an optional nested field: leave the field absent
            child = {}
            node[part] = child
        node = child
    if value is None and len(parts) > 1:
        return
    node[parts[-1]] = value

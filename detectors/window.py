"""Columnar window: the only input detectors see.

The agent turns prediction-log records into one of these per window (per model version and
segment). Detectors never see Kafka records, files or settings objects: only arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
# A vector feature (an embedding): rows x dimension, float32 (half the bytes; distances and kernels
# need no more precision). A row of NaN marks a record that lacked the vector.
VectorArray = npt.NDArray[np.float32]
ObjectArray = npt.NDArray[np.object_]
# A feature column is float64 (numbers and bools; NaN marks a missing value) or object
# (strings; None marks a missing value). The agent decides the kind from the reference data.
Column = FloatArray | ObjectArray


@dataclasses.dataclass(frozen=True)
class FieldCounts:
    """How the records' feature fields came, before they became columns.

    A column alone cannot tell a null from a field the record lacked, or from a value of the wrong
    type (all three become NaN or None); the data-quality checks need to. Names absent from a
    mapping count zero.
    """

    # Schema feature -> records that lacked the field altogether.
    absent: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Numeric schema feature -> values that were not numbers (e.g. a string), read as NaN.
    mistyped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Field name the schema does not know -> records that carried it (left out of the columns).
    unknown: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of records, column by column. Every array has length ``size``.

    Optional columns are ``None`` when no record in the window carried them.
    """

    features: Mapping[str, Column]
    # Vector features (fixed dimension per name, set by the reference): name -> rows x dimension.
    vectors: Mapping[str, VectorArray] = dataclasses.field(default_factory=dict)
    predictions: Column | None = None
    # Confidence of the predicted class (or the positive-class probability), in [0, 1].
    confidences: FloatArray | None = None
    # Ground-truth labels joined by request_id; NaN/None where no label has arrived yet.
    labels: Column | None = None
    latency_ms: FloatArray | None = None
    gpu_latency_ms: FloatArray | None = None
    # 1.0 where the record's status was "error", else 0.0.
    errors: FloatArray | None = None
    # Event time (epoch seconds) of each record.
    timestamps: FloatArray | None = None
    # The records' request ids (str), for the duplicate check; None where not known.
    request_ids: ObjectArray | None = None
    # How the feature fields came (absent, mistyped, unknown); None where not counted.
    fields: FieldCounts | None = None
    model_version: str | None = None
    segment: Mapping[str, str] | None = None
    # Index (in arrival order, 0-based) of the last record of the window; replay reports it.
    last_record_index: int = -1

    @property
    def size(self) -> int:
        for column in self.features.values():
            return len(column)
        for vectors in self.vectors.values():
            return len(vectors)
        for optional in (self.predictions, self.latency_ms, self.gpu_latency_ms, self.errors):
            if optional is not None:
                return len(optional)
        return 0


# A Window's per-row arrays besides its features, each None or one value per row.
ROW_ARRAYS = (
    "predictions",
    "confidences",
    "labels",
    "latency_ms",
    "gpu_latency_ms",
    "errors",
    "timestamps",
    "request_ids",
)


def concat(windows: list[Window]) -> Window:
    """Several windows of one version as one, rows in the given order.

    A feature, a vector or an optional column is kept only where every window has it (the rows must stay
    aligned); per-window field counts are not carried over.
    """
    if not windows:
        raise ValueError("concat needs at least one window")
    if len(windows) == 1:
        return windows[0]
    shared = set(windows[0].features).intersection(*(w.features for w in windows[1:]))
    features = {
        name: np.concatenate([w.features[name] for w in windows])
        for name in windows[0].features
        if name in shared
    }
    shared_vectors = set(windows[0].vectors).intersection(*(w.vectors for w in windows[1:]))
    vectors = {name: np.concatenate([w.vectors[name] for w in windows]) for name in sorted(shared_vectors)}
    optional: dict[str, Column | None] = {}
    for name in ROW_ARRAYS:
        parts = [getattr(w, name) for w in windows]
        optional[name] = None if any(part is None for part in parts) else np.concatenate(parts)
    last = windows[-1]
    return dataclasses.replace(
        last,
        features=features,
        vectors=vectors,
        fields=None,
        **optional,  # type: ignore[arg-type]
    )

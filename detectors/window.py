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
        for optional in (self.predictions, self.latency_ms, self.gpu_latency_ms, self.errors):
            if optional is not None:
                return len(optional)
        return 0

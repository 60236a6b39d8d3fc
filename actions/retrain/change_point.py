"""Where the served model's errors rose, among the recent labelled rows: the retrain's start.

A retrain is triggered soon after a change, so most recent rows still come from before it; a
model learnt from all of them splits the difference between the old and the new relationship and
stays worse than the old model was (its incident never clears). The rows carry what the serving
model answered, so its error on each row is known: the split that best separates a low error rate
before from a higher one after (a two-sample z statistic maximised over split points, as binary
segmentation does) marks the change, and the sliding strategies train from there on.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from actions.retrain import dataset

# The maximum of the split statistic over n candidate splits of a stationary stream grows like
# sqrt(2 log log n); 4.0 is beyond its 99.9th percentile for the sizes retrains see (10^2..10^6).
MIN_CHANGE_Z = 4.0
# A classification label set has at most this many distinct integral values (as the trainer's auto task).
MAX_INTEGRAL_CLASSES = 20


def served_errors(rows: dataset.TrainingSet) -> npt.NDArray[np.float64] | None:
    """Per row: 1.0/0.0 for a wrong/right class, or the absolute error of a numeric answer.

    NaN where the serving model's answer is not known; None when no row has one.
    """
    served = rows.served_predictions
    if served is None or rows.size == 0:
        return None
    labels = rows.labels
    numeric = labels.dtype.kind in "fiub" and served.dtype.kind in "fiub"
    if not numeric:
        known = np.array([s is not None and not (isinstance(s, float) and math.isnan(s)) for s in served])
        wrong = np.array([str(s) != str(y) for s, y in zip(served, labels, strict=True)], dtype=np.float64)
        return np.where(known, wrong, np.nan)
    answers = served.astype(np.float64)
    truth = labels.astype(np.float64)
    finite = truth[np.isfinite(truth)]
    classes = np.unique(finite)
    if len(classes) <= MAX_INTEGRAL_CLASSES and np.all(classes == np.round(classes)):
        errors = (np.round(answers) != truth).astype(np.float64)
    else:
        errors = np.abs(answers - truth)
    errors[~np.isfinite(answers) | ~np.isfinite(truth)] = np.nan
    return errors if np.isfinite(errors).any() else None


def change_start(errors: npt.NDArray[np.float64], min_side: int, min_z: float = MIN_CHANGE_Z) -> int | None:
    """The first row after the split where the error rose the most, if it rose significantly.

    ``min_side``: fewest rows on either side of a split. None when no split reaches ``min_z``.
    Rows whose error is unknown (NaN) count as the average: they move no split.
    """
    size = len(errors)
    if size < 2 * min_side or min_side < 1:
        return None
    known = np.isfinite(errors)
    if not known.any():
        return None
    filled = np.where(known, errors, errors[known].mean())
    spread = float(filled.std())
    if spread == 0.0:
        return None
    before = np.cumsum(filled)[:-1]  # sums of rows [0, k) for k = 1..size-1
    split = np.arange(1, size, dtype=np.float64)
    mean_before = before / split
    mean_after = (filled.sum() - before) / (size - split)
    z = (mean_after - mean_before) / (spread * np.sqrt(1.0 / split + 1.0 / (size - split)))
    z[: min_side - 1] = -np.inf
    z[size - min_side :] = -np.inf
    best = int(np.argmax(z))
    return best + 1 if z[best] >= min_z else None

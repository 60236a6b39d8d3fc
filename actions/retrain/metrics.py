"""Model-quality metrics the gates compare: F1, ROC AUC, accuracy, RMSE (numpy, no sklearn).

Classification labels and predictions are compared through ``dataset.label_key`` (1, 1.0 and "1"
are one class). Each metric knows whether higher is better, so the gates have one rule.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from actions.retrain import dataset

FloatArray = npt.NDArray[np.float64]


class Metric(enum.StrEnum):
    F1 = "f1"  # binary: F1 of the positive class; multiclass: macro F1
    AUC = "auc"  # binary only: ROC AUC of the positive-class score
    ACCURACY = "accuracy"
    RMSE = "rmse"  # regression

    @property
    def higher_is_better(self) -> bool:
        return self is not Metric.RMSE


def keys(values: dataset.Column) -> list[str]:
    return [dataset.label_key(v) for v in values]


def f1_binary(labels: Sequence[str], predictions: Sequence[str], positive: str) -> float:
    true_positive = sum(
        1 for y, p in zip(labels, predictions, strict=True) if y == positive and p == positive
    )
    predicted = sum(1 for p in predictions if p == positive)
    actual = sum(1 for y in labels if y == positive)
    if predicted + actual == 0:
        return 1.0  # no positives anywhere, none predicted: nothing was wrong
    return 2.0 * true_positive / (predicted + actual)


def f1_macro(labels: Sequence[str], predictions: Sequence[str]) -> float:
    classes = sorted(set(labels))
    if not classes:
        return math.nan
    return float(np.mean([f1_binary(labels, predictions, c) for c in classes]))


def accuracy(labels: Sequence[str], predictions: Sequence[str]) -> float:
    if not labels:
        return math.nan
    return sum(1 for y, p in zip(labels, predictions, strict=True) if y == p) / len(labels)


def roc_auc(labels: Sequence[str], scores: FloatArray, positive: str) -> float:
    """Mann-Whitney form (ties count half); NaN when one class is absent or a score is missing."""
    is_positive = np.array([y == positive for y in labels])
    if not np.all(np.isfinite(scores)):
        return math.nan
    positives = int(is_positive.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    return float((ranks[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def rmse(labels: dataset.Column, predictions: dataset.Column) -> float:
    truth = np.asarray(labels, dtype=np.float64)
    guess = np.asarray(predictions, dtype=np.float64)
    if truth.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((truth - guess) ** 2)))


def compute(
    metric: Metric,
    labels: dataset.Column,
    predictions: dataset.Column,
    scores: FloatArray | None,
    *,
    positive: str | None,
) -> float:
    """``metric`` of ``predictions`` (and binary ``scores``) against ``labels``; NaN if undefined."""
    if metric is Metric.RMSE:
        return rmse(labels, predictions)
    truth, guess = keys(labels), keys(predictions)
    if metric is Metric.ACCURACY:
        return accuracy(truth, guess)
    if metric is Metric.AUC:
        if scores is None or positive is None:
            return math.nan
        return roc_auc(truth, scores, positive)
    if positive is not None:
        return f1_binary(truth, guess, positive)
    return f1_macro(truth, guess)

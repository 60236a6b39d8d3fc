"""Concept drift: labelled performance against the reference.

``PerformanceDetector`` compares one window's realised metric with the reference's and needs
both a significant test and a drop larger than a floor (large windows make tiny drops
significant). The streaming change detectors on the per-row error stream are in
``detectors.concept_streams``; the labelled-window helpers here serve both.

Rows whose label has not arrived (NaN/None) are left out and counted in ``missing_count``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pydantic
from scipy import special, stats

from detectors import base
from detectors import window as window_mod

FloatArray = npt.NDArray[np.float64]
Task = Literal["classification", "regression"]
Metric = Literal["accuracy", "f1", "auc", "mae", "rmse"]
ConfidenceKind = Literal["positive_class", "predicted_class"]

CLASSIFICATION_METRICS: tuple[Metric, ...] = ("accuracy", "f1", "auc")
REGRESSION_METRICS: tuple[Metric, ...] = ("mae", "rmse")


def _label_key(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float | int) and float(value).is_integer():
        return str(int(value))
    return str(value)


def label_keys(column: window_mod.Column) -> npt.NDArray[np.object_]:
    """Class labels as comparable strings (1.0 and "1" agree); None where missing."""
    if column.dtype == np.float64 and len(column):
        # A float column holds a few classes: convert each distinct value once, not every row.
        distinct, rows = np.unique(column, return_inverse=True)
        return np.array([_label_key(v) for v in distinct.tolist()], dtype=object)[rows]
    keys = np.empty(len(column), dtype=object)
    keys[:] = [_label_key(value) for value in column.tolist()]
    return keys


def numeric_column(column: window_mod.Column, name: str) -> FloatArray:
    """A float view of ``column``; non-numbers become NaN (counted as missing by the callers)."""
    if column.dtype == np.float64:
        return np.asarray(column, dtype=np.float64)
    out = np.full(len(column), np.nan)
    for index, value in enumerate(column.tolist()):
        if isinstance(value, int | float):  # bool is an int: True counts as 1.0
            out[index] = float(value)
    if np.all(np.isnan(out)) and len(out):
        raise base.CannotRun(f"{name} holds no numbers; a regression task needs numeric {name}")
    return out


def record_error(prediction: object, label: object, task: Task) -> float | None:
    """One record's error as ``Labelled`` counts it (1.0/0.0 wrong/right, or prediction - label);
    None when either side is missing or, for regression, not a finite number."""
    if task == "classification":
        predicted, truth = _label_key(prediction), _label_key(label)
        if predicted is None or truth is None:
            return None
        return float(predicted != truth)
    if not isinstance(prediction, int | float) or not isinstance(label, int | float):
        return None
    error = float(prediction) - float(label)
    return error if math.isfinite(error) else None


class Labelled:
    """The rows of a window that carry both a prediction and a label."""

    def __init__(self, window: window_mod.Window, task: Task, detector: str) -> None:
        if window.labels is None:
            raise base.CannotRun(f"{detector}: the window carries no labels yet")
        if window.predictions is None:
            raise base.CannotRun(f"{detector}: the window carries no predictions")
        if task == "classification":
            labels = label_keys(window.labels)
            predictions = label_keys(window.predictions)
            present = (labels != None) & (predictions != None)  # noqa: E711 - elementwise on object arrays
        else:
            label_values = numeric_column(window.labels, "labels")
            prediction_values = numeric_column(window.predictions, "predictions")
            present = np.isfinite(label_values) & np.isfinite(prediction_values)
        self.rows = np.flatnonzero(present)
        self.missing = len(present) - len(self.rows)
        self.task = task
        if task == "classification":
            self.labels: npt.NDArray[Any] = labels[self.rows]
            self.predictions: npt.NDArray[Any] = predictions[self.rows]
            self.errors: FloatArray = (self.labels != self.predictions).astype(np.float64)
        else:
            self.labels = label_values[self.rows]
            self.predictions = prediction_values[self.rows]
            self.errors = self.predictions - self.labels
        self.confidences = (
            np.asarray(window.confidences, dtype=np.float64)[self.rows]
            if window.confidences is not None
            else None
        )

    def __len__(self) -> int:
        return len(self.rows)


def positive_scores(labelled: Labelled, positive_label: str, kind: ConfidenceKind) -> FloatArray | None:
    """Score of the positive class per row (for AUC), or None when the window has no confidences."""
    if labelled.confidences is None:
        return None
    if kind == "positive_class":
        return labelled.confidences
    predicted_positive = labelled.predictions == positive_label
    return np.where(predicted_positive, labelled.confidences, 1.0 - labelled.confidences)


def f1_score(truth: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]) -> float:
    true_positive = float(np.sum(truth & predicted))
    denominator = float(np.sum(truth) + np.sum(predicted))
    return 2.0 * true_positive / denominator if denominator else 0.0


def auc_score(truth: npt.NDArray[np.bool_], scores: FloatArray) -> float:
    """ROC AUC by ranks (ties count half); NaN when one class is absent."""
    positives = int(np.sum(truth))
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    rank_sum = float(np.sum(ranks[truth]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    # Hanley & McNeil (1982): the AUC's sampling error from the class sizes alone.
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


class PerformanceConfig(base.DetectorConfig):
    task: Task = pydantic.Field("classification", description="classification or regression.")
    metric: Metric | None = pydantic.Field(
        None,
        description="Metric that decides: accuracy, f1, auc (classification; auc needs binary confidences) "
        "or mae, rmse (regression). Null = accuracy / rmse.",
    )
    alpha: float = pydantic.Field(
        0.05, gt=0, lt=1, description="Significance level of the one-sided test (worse than reference)."
    )
    min_drop: float = pydantic.Field(
        0.02, ge=0, le=1, description="Smallest absolute drop of accuracy/f1/auc that counts as drift."
    )
    min_relative_increase: float = pydantic.Field(
        0.10, ge=0, description="Smallest relative rise of mae/rmse that counts as drift (0.1 = +10%)."
    )
    positive_label: str = pydantic.Field(
        "1", description="Positive class for f1/auc, as text (1.0 and 1 both match '1')."
    )
    confidence_kind: ConfidenceKind = pydantic.Field(
        "positive_class",
        description="What window.confidences holds: the positive-class probability or the predicted "
        "class's confidence.",
    )
    min_labelled: int = pydantic.Field(
        30, ge=2, description="Fewer labelled rows than this in the window: no verdict (CannotRun)."
    )
    n_bootstrap: int = pydantic.Field(200, ge=20, le=100_000, description="Bootstrap resamples for f1.")
    seed: int = pydantic.Field(0, description="Seed of the f1 bootstrap.")

    @pydantic.model_validator(mode="after")
    def _metric_fits_task(self) -> PerformanceConfig:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        if self.metric is not None and self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} does not fit task {self.task!r}; use one of {', '.join(allowed)}"
            )
        return self

    @property
    def decisive_metric(self) -> Metric:
        if self.metric is not None:
            return self.metric
        return "accuracy" if self.task == "classification" else "rmse"


class PerformanceDetector(base.Detector[PerformanceConfig], base.NeedsReference):
    """Realised performance of a labelled window against the labelled reference."""

    requires_labels = True

    name: ClassVar[str] = "performance"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.PERFORMANCE
    config_class: ClassVar[type[base.DetectorConfig]] = PerformanceConfig

    def __init__(self, config: PerformanceConfig) -> None:
        super().__init__(config)
        self._reference: Labelled | None = None

    def set_reference(self, reference: window_mod.Window) -> None:
        try:
            labelled = Labelled(reference, self.config.task, self.name)
        except base.CannotRun as exc:
            raise ValueError(f"performance: the reference needs predictions and labels ({exc})") from exc
        if len(labelled) < self.config.min_labelled:
            raise ValueError(
                f"performance: the reference has {len(labelled)} labelled rows; "
                f"min_labelled is {self.config.min_labelled}"
            )
        self._reference = labelled

    def reset(self) -> None:
        """Nothing is learned from windows: each verdict depends on the reference and the window."""

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        if self._reference is None:
            raise base.CannotRun("performance: no reference set yet")
        current = Labelled(window, self.config.task, self.name)
        if len(current) < self.config.min_labelled:
            raise base.CannotRun(
                f"performance: {len(current)} labelled rows in the window, fewer than "
                f"min_labelled={self.config.min_labelled}"
            )
        if self.config.task == "classification":
            return self._classification(window, current, self._reference)
        return self._regression(window, current, self._reference)

    def _classification(
        self, window: window_mod.Window, current: Labelled, reference: Labelled
    ) -> base.DetectorResult:
        config = self.config
        metric = config.decisive_metric
        extras: dict[str, float] = {"labelled": float(len(current))}
        for name, sample in (("", current), ("reference_", reference)):
            extras[f"{name}accuracy"] = 1.0 - float(np.mean(sample.errors))
            truth = sample.labels == config.positive_label
            extras[f"{name}f1"] = f1_score(truth, sample.predictions == config.positive_label)
            scores = positive_scores(sample, config.positive_label, config.confidence_kind)
            if scores is not None:
                extras[f"{name}auc"] = auc_score(truth, scores)
        extras = {k: v for k, v in extras.items() if not math.isnan(v)}
        if metric not in extras or f"reference_{metric}" not in extras:
            raise base.CannotRun(
                f"performance: {metric} cannot be computed for this window "
                "(auc needs confidences and both classes present)"
            )
        value, baseline = extras[metric], extras[f"reference_{metric}"]
        if metric == "accuracy":
            p_value = _two_proportion_lower(1.0 - current.errors, 1.0 - reference.errors)
        elif metric == "auc":
            p_value = self._auc_p_value(current, reference, value, baseline)
        else:
            p_value = self._f1_p_value(current, reference)
        drop = baseline - value
        drifted = p_value < config.alpha and drop >= config.min_drop
        return self._result(
            window,
            current=current,
            reference=reference,
            metric=metric,
            value=value,
            threshold=baseline - config.min_drop,
            drifted=drifted,
            p_value=p_value,
            effect=drop,
            higher_is_drift=False,
            extras=extras,
        )

    def _auc_p_value(self, current: Labelled, reference: Labelled, value: float, baseline: float) -> float:
        errors = []
        for sample, auc in ((current, value), (reference, baseline)):
            positives = int(np.sum(sample.labels == self.config.positive_label))
            errors.append(_auc_standard_error(auc, positives, len(sample) - positives))
        spread = math.hypot(*errors)
        if spread == 0.0:
            return 0.0 if value < baseline else 1.0
        return float(special.ndtr((value - baseline) / spread))

    def _f1_p_value(self, current: Labelled, reference: Labelled) -> float:
        # Percentile bootstrap of the F1 difference; one-sided: how often is current >= reference.
        rng = np.random.default_rng(self.config.seed)
        positive = self.config.positive_label
        samples = []
        for sample in (current, reference):
            truth = sample.labels == positive
            predicted = sample.predictions == positive
            picks = rng.integers(0, len(sample), size=(self.config.n_bootstrap, len(sample)))
            hits = np.sum(truth[picks] & predicted[picks], axis=1)
            sizes = np.sum(truth[picks], axis=1) + np.sum(predicted[picks], axis=1)
            samples.append(np.divide(2.0 * hits, sizes, out=np.zeros(len(sizes)), where=sizes > 0))
        not_worse = int(np.sum(samples[0] >= samples[1]))
        return (1 + not_worse) / (1 + self.config.n_bootstrap)

    def _regression(
        self, window: window_mod.Window, current: Labelled, reference: Labelled
    ) -> base.DetectorResult:
        config = self.config
        metric = config.decisive_metric
        extras: dict[str, float] = {"labelled": float(len(current))}
        for name, sample in (("", current), ("reference_", reference)):
            extras[f"{name}mae"] = float(np.mean(np.abs(sample.errors)))
            extras[f"{name}rmse"] = float(np.sqrt(np.mean(sample.errors**2)))
        value, baseline = extras[metric], extras[f"reference_{metric}"]
        power = 1 if metric == "mae" else 2
        current_losses = np.abs(current.errors) ** power
        reference_losses = np.abs(reference.errors) ** power
        p_value = _welch_greater(current_losses, reference_losses)
        # A perfect reference (zero error) would make any rise infinite: floor the divisor.
        rise = value / max(baseline, 1e-12) - 1.0
        drifted = p_value < config.alpha and rise >= config.min_relative_increase
        threshold = baseline * (1.0 + config.min_relative_increase)
        return self._result(
            window,
            current=current,
            reference=reference,
            metric=metric,
            value=value,
            threshold=threshold,
            drifted=drifted,
            p_value=p_value,
            effect=rise,
            higher_is_drift=True,
            extras=extras,
        )

    def _result(
        self,
        window: window_mod.Window,
        *,
        current: Labelled,
        reference: Labelled,
        metric: str,
        value: float,
        threshold: float,
        drifted: bool,
        p_value: float,
        effect: float,
        higher_is_drift: bool,
        extras: dict[str, float],
    ) -> base.DetectorResult:
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic=metric,
            score=value,
            threshold=threshold,
            drifted=drifted,
            higher_is_drift=higher_is_drift,
            p_value=p_value,
            effect_size=effect,
            reference_size=len(reference),
            current_size=len(current),
            missing_count=current.missing,
            model_version=window.model_version,
            segment=window.segment,
            extras=extras,
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # A binary classifier right 85% of the time: one-sided z-test at 0.05 plus a 0.02 floor,
        # so the false-alarm rate is at most 0.05.
        return base.ConformanceExample({}, classifier_window(rng, 2000, 0.15), _stationary_classifier, 0.05)


def classifier_window(rng: np.random.Generator, size: int, error_rate: float) -> window_mod.Window:
    labels = (rng.random(size) < 0.4).astype(np.float64)
    wrong = rng.random(size) < error_rate
    predictions = np.where(wrong, 1.0 - labels, labels)
    return window_mod.Window(features={}, predictions=predictions, labels=labels)


def _stationary_classifier(rng: np.random.Generator) -> window_mod.Window:
    return classifier_window(rng, 500, 0.15)


def _two_proportion_lower(current_hits: FloatArray, reference_hits: FloatArray) -> float:
    """One-sided p-value that the current success rate is below the reference's (pooled z)."""
    n_current, n_reference = len(current_hits), len(reference_hits)
    p_current, p_reference = float(np.mean(current_hits)), float(np.mean(reference_hits))
    pooled = (p_current * n_current + p_reference * n_reference) / (n_current + n_reference)
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_current + 1.0 / n_reference))
    if spread == 0.0:
        return 0.0 if p_current < p_reference else 1.0
    return float(special.ndtr((p_current - p_reference) / spread))


def _welch_greater(current: FloatArray, reference: FloatArray) -> float:
    """One-sided Welch t-test p-value that the current mean exceeds the reference mean."""
    if np.ptp(current) == 0.0 and np.ptp(reference) == 0.0:
        return 0.0 if float(np.mean(current)) > float(np.mean(reference)) else 1.0
    result = stats.ttest_ind(current, reference, equal_var=False, alternative="greater")
    return float(result.pvalue)

"""Confidence-based performance estimation (CBPE, as in NannyML) for binary classifiers.

Labels often arrive late or never. If the model's confidences are calibrated, the chance a
prediction is right is known row by row, so the window's accuracy (and, through the expected
confusion matrix, its F1) can be estimated without labels. The estimate is judged against the
reference with NannyML's thresholds: the reference's estimated value +- ``sigma_multiplier`` (3)
standard deviations of the estimate over reference chunks, rescaled to the window size. The
band is centred on the reference's *estimated* value, not its realised one: the realised value
carries its own sampling noise: centred on it, 11% of windows alarmed on calibrated data
(0-3% centred on the estimate). The realised reference value is reported beside it, and so is
NannyML's confidence band of the estimate (+- 3 sampling errors of the realised metric).

CBPE cannot see concept drift (the relation of features to labels changing): calibration is
assumed to hold. It sees covariate shift moving traffic to where the model is less sure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pydantic

from detectors import base, concept
from detectors import window as window_mod

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class CBPEConfig(base.DetectorConfig):
    metric: Literal["accuracy", "f1"] = pydantic.Field("accuracy", description="Metric to estimate.")
    positive_label: str = pydantic.Field("1", description="Positive class, as text (1.0 and 1 match '1').")
    confidence_kind: concept.ConfidenceKind = pydantic.Field(
        "positive_class",
        description="What window.confidences holds: the positive-class probability or the predicted "
        "class's confidence (then predictions are required).",
    )
    decision_threshold: float = pydantic.Field(
        0.5,
        gt=0,
        lt=1,
        description="Predicted positive when the positive-class probability >= this "
        "(used only when the window carries no predictions).",
    )
    sigma_multiplier: float = pydantic.Field(
        3.0, gt=0, description="Band half-width in sampling standard deviations (NannyML uses 3)."
    )
    min_chunks: int = pydantic.Field(
        5, ge=2, description="The reference must hold at least this many chunks of min_samples rows."
    )
    n_chunks: int = pydantic.Field(
        50,
        ge=5,
        description="Chunks the reference is cut into to measure the estimate's spread (at most one "
        "window long each); 10 chunks (NannyML's usual count) measured the spread within +-40%.",
    )
    direction: Literal["both", "lower"] = pydantic.Field(
        "both", description="both: drift outside the band on either side (NannyML); lower: only below it."
    )
    min_samples: int = pydantic.Field(20, ge=2, description="Fewer rows with confidences: no verdict.")


class _Scored:
    """Rows with a confidence: positive-class probability and whether the model said positive."""

    def __init__(self, window: window_mod.Window, config: CBPEConfig) -> None:
        if window.confidences is None:
            raise base.CannotRun("cbpe: the window carries no confidences")
        confidences = np.asarray(window.confidences, dtype=np.float64)
        keep = np.isfinite(confidences) & (confidences >= 0.0) & (confidences <= 1.0)
        predicted: BoolArray | None = None
        if window.predictions is not None:
            keys = concept.label_keys(window.predictions)
            keep &= keys != None  # noqa: E711 - elementwise on an object array
            predicted = keys == config.positive_label
        elif config.confidence_kind == "predicted_class":
            raise base.CannotRun("cbpe: confidence_kind='predicted_class' needs the window's predictions")
        self.rows = np.flatnonzero(keep)
        self.missing = len(confidences) - len(self.rows)
        confidences = confidences[self.rows]
        if predicted is None:
            self.predicted = confidences >= config.decision_threshold
        else:
            self.predicted = predicted[self.rows]
        if config.confidence_kind == "positive_class":
            self.probability = confidences
        else:
            self.probability = np.where(self.predicted, confidences, 1.0 - confidences)

    def __len__(self) -> int:
        return len(self.rows)


def expected_metric(probability: FloatArray, predicted: BoolArray, metric: str) -> float:
    """The metric's expectation when each row is positive with its calibrated probability."""
    if metric == "accuracy":
        return float(np.mean(np.where(predicted, probability, 1.0 - probability)))
    true_positive = float(np.sum(probability[predicted]))
    false_positive = float(np.sum(1.0 - probability[predicted]))
    false_negative = float(np.sum(probability[~predicted]))
    denominator = 2.0 * true_positive + false_positive + false_negative
    return 2.0 * true_positive / denominator if denominator > 0 else 0.0


def realised_metric(truth: BoolArray, predicted: BoolArray, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(truth == predicted))
    return concept.f1_score(truth, predicted)


class CBPEDetector(base.Detector[CBPEConfig], base.NeedsReference):
    """Estimated accuracy/F1 from calibrated confidences, against the reference's realised value."""

    name: ClassVar[str] = "cbpe"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.PERFORMANCE
    config_class: ClassVar[type[base.DetectorConfig]] = CBPEConfig

    def __init__(self, config: CBPEConfig) -> None:
        super().__init__(config)
        self._reference: _Scored | None = None
        self._truth: BoolArray = np.zeros(0, dtype=bool)
        self._truth_predicted: BoolArray = np.zeros(0, dtype=bool)
        self._realised = math.nan
        self._estimated = math.nan

    def set_reference(self, reference: window_mod.Window) -> None:
        if reference.labels is None:
            raise base.ReferenceUnfitError(
                "cbpe: the reference needs labels (its realised metric is the baseline)"
            )
        try:
            scored = _Scored(reference, self.config)
        except base.CannotRun as exc:
            raise base.ReferenceUnfitError(f"cbpe: the reference needs confidences ({exc})") from exc
        truth_keys = concept.label_keys(reference.labels)[scored.rows]
        labelled = truth_keys != None  # noqa: E711 - elementwise on an object array
        needed = self.config.min_samples * self.config.min_chunks
        if len(scored) < needed or int(labelled.sum()) < self.config.min_samples:
            raise base.ReferenceUnfitError(
                f"cbpe: the reference has {len(scored)} rows with confidences "
                f"({int(labelled.sum())} labelled); it needs min_samples * min_chunks = {needed} "
                f"and {self.config.min_samples} labelled"
            )
        truth = truth_keys[labelled] == self.config.positive_label
        self._truth = truth
        self._truth_predicted = scored.predicted[labelled]
        self._realised = realised_metric(truth, self._truth_predicted, self.config.metric)
        self._estimated = expected_metric(scored.probability, scored.predicted, self.config.metric)
        self._reference = scored

    def reset(self) -> None:
        """Nothing is learned from windows."""

    def sampling_sigma(self, size: int) -> float:
        """Standard deviation of the estimate over reference chunks, rescaled to ``size`` rows."""
        if self._reference is None:
            raise base.CannotRun("cbpe: no reference set yet")
        reference = self._reference
        return _chunk_spread(
            size,
            len(reference),
            self.config.n_chunks,
            lambda rows: expected_metric(
                reference.probability[rows], reference.predicted[rows], self.config.metric
            ),
        )

    def sampling_error(self, size: int) -> float:
        """Standard deviation of the realised metric over labelled reference chunks, for ``size`` rows."""
        return _chunk_spread(
            size,
            len(self._truth),
            self.config.n_chunks,
            lambda rows: realised_metric(self._truth[rows], self._truth_predicted[rows], self.config.metric),
        )

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        if self._reference is None:
            raise base.CannotRun("cbpe: no reference set yet")
        scored = _Scored(window, self.config)
        if len(scored) < self.config.min_samples:
            raise base.CannotRun(
                f"cbpe: {len(scored)} rows with confidences, fewer than min_samples={self.config.min_samples}"
            )
        estimate = expected_metric(scored.probability, scored.predicted, self.config.metric)
        sigma = self.sampling_sigma(len(scored))
        half_width = self.config.sigma_multiplier * sigma
        lower, upper = self._estimated - half_width, self._estimated + half_width
        error_band = self.config.sigma_multiplier * self.sampling_error(len(scored))
        drifted = estimate < lower or (self.config.direction == "both" and estimate > upper)
        extras = {
            "estimate": estimate,
            "lower": lower,
            "upper": upper,
            "sigma": sigma,
            "estimate_band_lower": estimate - error_band,
            "estimate_band_upper": estimate + error_band,
            "reference_realised": self._realised,
            "reference_estimated": self._estimated,
        }
        realised = self._realised_in(window, scored)
        if realised is not None:
            extras["realised"] = realised
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic=f"estimated_{self.config.metric}",
            score=estimate,
            threshold=lower,
            drifted=drifted,
            higher_is_drift=False,
            effect_size=self._realised - estimate,
            reference_size=len(self._reference),
            current_size=len(scored),
            missing_count=scored.missing,
            model_version=window.model_version,
            segment=window.segment,
            extras=extras,
        )

    def _realised_in(self, window: window_mod.Window, scored: _Scored) -> float | None:
        """The window's realised metric where labels already arrived (for comparison only)."""
        if window.labels is None:
            return None
        keys = concept.label_keys(window.labels)[scored.rows]
        labelled = keys != None  # noqa: E711 - elementwise on an object array
        if int(labelled.sum()) < self.config.min_samples:
            return None
        truth = keys[labelled] == self.config.positive_label
        return realised_metric(truth, scored.predicted[labelled], self.config.metric)

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # +-3 sigma band around the realised reference value: about 0.3% false alarms when the
        # estimate is unbiased; promised 0.05 leaves room for the reference's own sampling error.
        def make_window(draw: np.random.Generator) -> window_mod.Window:
            return calibrated_window(draw, 500)

        return base.ConformanceExample({}, calibrated_window(rng, 5000), make_window, 0.05)


def _chunk_spread(size: int, available: int, n_chunks: int, metric: Callable[[slice], float]) -> float:
    # n_chunks chunks (none longer than the window); the metric is a mean over rows, so its
    # spread scales with 1/sqrt(rows) from the chunk size to the window size.
    chunk = max(1, min(size, available // n_chunks))
    values = [metric(slice(i * chunk, (i + 1) * chunk)) for i in range(available // chunk)]
    return float(np.std(values, ddof=1)) * math.sqrt(chunk / size)


def calibrated_window(
    rng: np.random.Generator, size: int, a: float = 2.0, b: float = 2.0, labelled: bool = True
) -> window_mod.Window:
    """Synthetic calibrated binary classifier: P(y=1) ~ Beta(a, b), y ~ Bernoulli(P(y=1)).

    Lower ``a`` and ``b`` push probabilities to 0 and 1 (an easier population); larger, to 0.5.
    """
    probability = rng.beta(a, b, size=size)
    truth = (rng.random(size) < probability).astype(np.float64)
    predicted = (probability >= 0.5).astype(np.float64)
    labels = truth if labelled else None
    return window_mod.Window(features={}, predictions=predicted, confidences=probability, labels=labels)

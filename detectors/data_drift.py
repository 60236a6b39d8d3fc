"""Dataset drift over feature columns, and prediction drift, with Evidently's per-column tests.

Each column gets one univariate test (``detectors.stattests``: Evidently's choice unless the
config names one); the dataset verdict is the share of drifted columns against ``drift_share``,
as in Evidently's ``DataDriftPreset``. A column kind (numeric or categorical) is fixed by the
reference: float columns are numeric, object columns categorical.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pydantic

from detectors import base, stattests
from detectors import window as window_mod

Sample = stattests.NumericSample | stattests.CategoricalSample
# The statistic of a column with nothing to compare (all values missing): reported, never drift.
NO_DATA = "no_data"


class DataDriftConfig(base.DetectorConfig):
    """Which test each column gets and when the dataset counts as drifted.

    A test or threshold is looked up per column first, then per kind, then for all columns;
    unset means Evidently's default choice and that test's default threshold.
    """

    drift_share: float = pydantic.Field(
        0.5, gt=0, le=1, description="Dataset drift when at least this share of columns drifted."
    )
    stattest: str | None = pydantic.Field(None, description="Test for every column (stattest name).")
    numerical_stattest: str | None = pydantic.Field(None, description="Test for numeric columns.")
    categorical_stattest: str | None = pydantic.Field(None, description="Test for categorical columns.")
    per_column_stattest: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Test per column name; wins over the settings above."
    )
    threshold: float | None = pydantic.Field(None, description="Threshold for every column.")
    numerical_threshold: float | None = pydantic.Field(None, description="Threshold for numeric columns.")
    categorical_threshold: float | None = pydantic.Field(
        None, description="Threshold for categorical columns."
    )
    per_column_threshold: dict[str, float] = pydantic.Field(
        default_factory=dict, description="Threshold per column name; wins over the settings above."
    )
    columns: list[str] | None = pydantic.Field(
        None, description="Columns to test; null = every column of the reference."
    )
    seed: int = pydantic.Field(0, description="Seed of permutation tests (empirical_mmd).")

    @pydantic.field_validator("stattest", "numerical_stattest", "categorical_stattest")
    @classmethod
    def _known_test(cls, name: str | None) -> str | None:
        if name is not None:
            stattests.get(name)
        return name

    @pydantic.field_validator("per_column_stattest")
    @classmethod
    def _known_tests(cls, names: dict[str, str]) -> dict[str, str]:
        for name in names.values():
            stattests.get(name)
        return names

    def test_for(self, column: str, kind: stattests.ColumnKind) -> str | None:
        by_kind = (
            self.numerical_stattest if kind is stattests.ColumnKind.NUMERICAL else self.categorical_stattest
        )
        return self.per_column_stattest.get(column) or by_kind or self.stattest

    def threshold_for(self, column: str, kind: stattests.ColumnKind) -> float | None:
        by_kind = (
            self.numerical_threshold if kind is stattests.ColumnKind.NUMERICAL else self.categorical_threshold
        )
        for value in (self.per_column_threshold.get(column), by_kind, self.threshold):
            if value is not None:
                return value
        return None


def _kind_of(column: window_mod.Column) -> stattests.ColumnKind:
    if column.dtype == np.object_:
        return stattests.ColumnKind.CATEGORICAL
    return stattests.ColumnKind.NUMERICAL


def _as_numbers(column: window_mod.Column) -> tuple[npt.NDArray[np.float64], int]:
    """A float view of ``column`` and how many present values were not numbers (they count as missing)."""
    if column.dtype != np.object_:
        return np.asarray(column, dtype=np.float64), 0
    numbers = np.full(column.shape[0], np.nan)
    not_numbers = 0
    for index, value in enumerate(column.tolist()):
        if isinstance(value, int | float):
            numbers[index] = float(value)
        elif value is not None:
            not_numbers += 1
    return numbers, not_numbers


def _as_categories(column: window_mod.Column) -> npt.NDArray[np.object_]:
    if column.dtype == np.object_:
        return np.asarray(column)
    # A numeric column against a categorical reference: compare the numbers as categories.
    return np.array([None if math.isnan(v) else v for v in column.tolist()], dtype=object)


def _sample(column: window_mod.Column, kind: stattests.ColumnKind) -> tuple[Sample, int]:
    """The prepared sample and the count of values of the wrong type (counted as missing)."""
    if kind is stattests.ColumnKind.NUMERICAL:
        numbers, wrong_type = _as_numbers(column)
        return stattests.numeric_sample(numbers), wrong_type
    return stattests.categorical_sample(_as_categories(column)), 0


@dataclasses.dataclass(frozen=True)
class _ReferenceColumn:
    kind: stattests.ColumnKind
    sample: Sample
    test: str | None
    threshold: float | None


class _ColumnsDrift:
    """The shared machinery: named reference columns in, per-column and share-based verdicts out."""

    def __init__(self, detector: str, family: base.DetectorFamily, config: DataDriftConfig) -> None:
        self.detector = detector
        self.family = family
        self.config = config
        self.reference: dict[str, _ReferenceColumn] = {}
        self.reference_size = 0
        self.unusable_reason = f"{detector}: no reference set yet"

    def set_reference(self, columns: Mapping[str, window_mod.Column], size: int) -> None:
        if not columns:
            # Not fatal: every window is skipped (CannotRun) until a usable reference arrives.
            self.reference = {}
            self.reference_size = size
            self.unusable_reason = f"{self.detector}: the reference window has no columns to compare"
            return
        wanted = self.config.columns if self.config.columns is not None else list(columns)
        named = set(self.config.per_column_stattest) | set(self.config.per_column_threshold) | set(wanted)
        unknown = sorted(named - set(columns))
        if unknown:
            raise ValueError(
                f"{self.detector}: config names column(s) {unknown} that the reference lacks; "
                f"reference columns: {sorted(columns)}"
            )
        reference: dict[str, _ReferenceColumn] = {}
        for name in wanted:
            kind = _kind_of(columns[name])
            test = self.config.test_for(name, kind)
            if test is not None:
                try:
                    stattests.get(test, kind)
                except stattests.UnknownStatTestError as exc:
                    raise ValueError(f"{self.detector}: column {name!r}: {exc}") from None
            sample, _ = _sample(columns[name], kind)
            if isinstance(sample, stattests.NumericSample):
                _ = sample.n_unique, sample.std  # computed once here, not on the first window
            reference[name] = _ReferenceColumn(kind, sample, test, self.config.threshold_for(name, kind))
        self.reference = reference
        self.reference_size = size

    def update(
        self, columns: Mapping[str, window_mod.Column | None], window: window_mod.Window
    ) -> base.DetectorResult:
        if not self.reference:
            raise base.CannotRun(self.unusable_reason)
        details = tuple(
            self._column_result(name, ref, columns.get(name), window) for name, ref in self.reference.items()
        )
        drifted = sum(1 for d in details if d.drifted)
        share = drifted / len(details)
        return base.DetectorResult(
            detector=self.detector,
            family=self.family,
            feature=None,
            statistic="share_of_drifted_columns",
            score=share,
            threshold=self.config.drift_share,
            drifted=share >= self.config.drift_share,
            reference_size=self.reference_size,
            current_size=window.size,
            missing_count=sum(d.missing_count for d in details),
            model_version=window.model_version,
            segment=window.segment,
            details=details,
            extras={
                "number_of_columns": float(len(details)),
                "number_of_drifted_columns": float(drifted),
                "columns_without_data": float(sum(1 for d in details if d.statistic == NO_DATA)),
            },
        )

    def _column_result(
        self,
        name: str,
        reference: _ReferenceColumn,
        column: window_mod.Column | None,
        window: window_mod.Window,
    ) -> base.DetectorResult:
        if column is None:
            return self._no_data(name, reference, current_size=0, missing=window.size, wrong_type=0)
        current, wrong_type = _sample(column, reference.kind)
        if reference.sample.size == 0 or current.size == 0:
            return self._no_data(name, reference, current.size, current.missing, wrong_type)
        if isinstance(reference.sample, stattests.NumericSample):
            assert isinstance(current, stattests.NumericSample)
            outcome = stattests.numeric(
                reference.sample, current, reference.test, reference.threshold, seed=self.config.seed
            )
        else:
            assert isinstance(current, stattests.CategoricalSample)
            outcome = stattests.categorical(reference.sample, current, reference.test, reference.threshold)
        return base.DetectorResult(
            detector=self.detector,
            family=self.family,
            feature=name,
            statistic=outcome.test.name,
            score=outcome.score,
            threshold=outcome.threshold,
            drifted=outcome.drifted,
            higher_is_drift=not outcome.test.is_p_value,
            p_value=outcome.p_value,
            effect_size=outcome.effect_size,
            reference_size=reference.sample.size,
            current_size=current.size,
            missing_count=current.missing,
            model_version=window.model_version,
            segment=window.segment,
            extras={
                **outcome.extras,
                "reference_missing": float(reference.sample.missing),
                "wrong_type": float(wrong_type),
            },
        )

    def _no_data(
        self, name: str, reference: _ReferenceColumn, current_size: int, missing: int, wrong_type: int
    ) -> base.DetectorResult:
        # Nothing to compare is not drift; the statistic says so and the policy can alert on it.
        return base.DetectorResult(
            detector=self.detector,
            family=self.family,
            feature=name,
            statistic=NO_DATA,
            score=0.0,
            threshold=1.0,
            drifted=False,
            reference_size=reference.sample.size,
            current_size=current_size,
            missing_count=missing,
            extras={"reference_missing": float(reference.sample.missing), "wrong_type": float(wrong_type)},
        )


class DataDriftDetector(base.Detector[DataDriftConfig], base.NeedsReference):
    """Per-feature univariate tests; drifted when the share of drifted features >= ``drift_share``."""

    name: ClassVar[str] = "data_drift"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.DATA_DRIFT
    config_class: ClassVar[type[base.DetectorConfig]] = DataDriftConfig

    def __init__(self, config: DataDriftConfig) -> None:
        super().__init__(config)
        self._columns = _ColumnsDrift(self.name, self.family, config)

    def set_reference(self, reference: window_mod.Window) -> None:
        self._columns.set_reference(reference.features, reference.size)

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        return self._columns.update(window.features, window)

    def reset(self) -> None:
        """Nothing is learned from windows: each verdict depends on the reference and the window only."""

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # K-S on "x" and the z-test on "colour", each at 0.05 (small reference), drift_share 0.5:
        # an alarm when either column fires, 1 - 0.95**2 = 0.0975 under no drift; promised 0.1.
        # (Not chi-square: Evidently's is a goodness-of-fit test that takes the reference shares as
        # exact, so it over-alarms when the window is not much smaller than the reference.)
        def make_window(draw: np.random.Generator, size: int = 300) -> window_mod.Window:
            return window_mod.Window(
                features={
                    "x": draw.normal(size=size),
                    "colour": draw.choice(np.array(["red", "green"], dtype=object), size=size),
                },
            )

        config = {"drift_share": 0.5, "per_column_stattest": {"x": "ks"}}
        return base.ConformanceExample(config, make_window(rng, 800), make_window, false_alarm_rate=0.1)


def _prediction_columns(window: window_mod.Window) -> dict[str, window_mod.Column | None]:
    return {"prediction": window.predictions, "confidence": window.confidences}


class PredictionDriftDetector(base.Detector[DataDriftConfig], base.NeedsReference):
    """The same tests on the model's outputs: ``prediction`` and ``confidence`` columns."""

    name: ClassVar[str] = "prediction_drift"
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.PREDICTION_DRIFT
    config_class: ClassVar[type[base.DetectorConfig]] = DataDriftConfig

    def __init__(self, config: DataDriftConfig) -> None:
        super().__init__(config)
        self._columns = _ColumnsDrift(self.name, self.family, config)

    def set_reference(self, reference: window_mod.Window) -> None:
        present = {k: v for k, v in _prediction_columns(reference).items() if v is not None}
        self._columns.set_reference(present, reference.size)

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        columns = _prediction_columns(window)
        if self._columns.reference and all(columns[name] is None for name in self._columns.reference):
            raise base.CannotRun("prediction_drift: the window carries no predictions or confidences")
        return self._columns.update(columns, window)

    def reset(self) -> None:
        """Nothing is learned from windows."""

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # A binary classifier: labels by the z-test, confidences by K-S, each at 0.05; drift_share
        # 0.5 -> an alarm when either fires, 1 - 0.95**2 = 0.0975 under no drift; promised 0.1.
        def make_window(draw: np.random.Generator, size: int = 400) -> window_mod.Window:
            confidence = draw.beta(5, 2, size=size)
            predicted = np.where(draw.random(size) < 0.3, "fraud", "ok").astype(object)
            return window_mod.Window(features={}, predictions=predicted, confidences=confidence)

        return base.ConformanceExample({"drift_share": 0.5}, make_window(rng, 900), make_window, 0.1)

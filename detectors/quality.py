"""Data-quality checks: a broken pipeline is not drift.

Seven detectors of the ``quality`` family, each judged per window key (model version and
segment) against the reference, like every detector. A feature check reports one detail per
feature it applies to; the policy opens one incident per feature (``<model>/quality/<feature>``)
and one for the records as a whole (``<model>/quality/records``: new fields, duplicate ids).

==================  ==========================================  =====================================
detector            counts, per feature                         compared with
==================  ==========================================  =====================================
missing_values      nulls (field present, value null)           the reference's null share
schema              records lacking the field; fields the       the reference's absent share; a new
                    reference never had (records level)         field against 1 / (reference rows+1)
type_mismatch       values of the wrong type (a string where    the reference's mismatch share
                    a number belongs; numeric features)
out_of_range        numbers outside the reference's range       2 / (reference values + 1), the chance
                    widened by ``margin`` on each side, or      a new value falls outside the range of
                    outside configured ``bounds``               exchangeable data (or the reference's
                                                                share outside ``bounds``)
unseen_categories   values of a categorical feature never       Good-Turing: the reference's share of
                    seen in the reference                       values seen exactly once
frozen_features     a window whose values are all equal         the chance of that under the reference
                                                                (top value share ^ (values - 1))
duplicate_ids       records whose request id repeats one        the reference's duplicate share
                    earlier in the window (records level)
==================  ==========================================  =====================================

A check fails (``drifted``) when both hold: its one-sided p-value, Bonferroni-adjusted over the
details the check reports in the window, is below ``alpha``; and the share rose above what the
reference leads one to expect by at least ``min_increase`` (the effect size). Both, because
large windows make p-values fire on trivial rises and small ones make shares jump on noise.

Where the definitions differ from NannyML's and Evidently's checks (README, Data quality):
NannyML's missing-values and unseen-values calculators alert on a chunk outside three standard
deviations of the reference chunks (missing) or on any unseen value; Evidently's column tests
fail when a share of missing values exceeds the reference's by 10 %, on any value out of the
reference's range or list, and on any constant or duplicated column. Those fire on stationary
data with long-tailed categories or rare extremes; the tests here give a stated false-alarm
rate instead.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeVar

import numpy as np
import pydantic

from detectors import base, pvalues
from detectors import window as window_mod

NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"
# The incident group of the records-level checks (new fields, duplicate ids).
RECORDS_GROUP: Final = "records"


class QualityConfig(base.DetectorConfig):
    """What every data-quality check shares."""

    alpha: float = pydantic.Field(
        1e-3,
        gt=0,
        lt=1,
        description="A check fails only when its one-sided p-value (Bonferroni-adjusted over the "
        "features checked in the window) is below this.",
    )
    min_increase: float = pydantic.Field(
        0.02,
        ge=0,
        le=1,
        description="...and the share affected rose above what the reference leads one to expect by "
        "at least this (absolute; the effect size).",
    )
    min_samples: int = pydantic.Field(50, ge=1, description="Fewer records in the window: no verdict.")


class OutOfRangeConfig(QualityConfig):
    margin: float = pydantic.Field(
        0.1,
        ge=0,
        description="The reference's [min, max] is widened by this fraction of its width on each side.",
    )
    bounds: dict[str, tuple[float | None, float | None]] = pydantic.Field(
        default_factory=dict,
        description="Feature -> [low, high] valid range (null = open), used instead of the reference's "
        "range for that feature, e.g. {age: [0, 120]}.",
    )

    @pydantic.field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: dict[str, tuple[float | None, float | None]]) -> Any:
        for name, (low, high) in bounds.items():
            if low is not None and high is not None and high < low:
                raise ValueError(f"bounds.{name}: high ({high}) is below low ({low}); give [low, high]")
        return bounds


class FrozenConfig(QualityConfig):
    min_increase: float = pydantic.Field(
        0.05,
        ge=0,
        le=1,
        description="A constant window fails when the reference's values vary at least this much "
        "(1 - the share of its most common value; the effect size).",
    )


ConfigT = TypeVar("ConfigT", bound=QualityConfig)


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one check found in one feature (or in the records) of one window."""

    statistic: str
    count: int  # values (or records) affected
    size: int  # among how many
    expected: float  # share expected from the reference
    p_value: float  # one-sided, before the adjustment over the window's details
    effect: float  # how far the share rose above what was expected
    reference_size: int
    extras: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.count / self.size if self.size else 0.0


def rate_finding(statistic: str, count: int, size: int, reference_count: int, reference_size: int) -> Finding:
    """A share against the reference's share of the same thing (two-proportion test)."""
    share = count / size if size else 0.0
    expected = reference_count / reference_size if reference_size else 0.0
    p_value = (
        pvalues.two_proportion_greater(share, size, expected, reference_size)
        if size and reference_size
        else 1.0
    )
    return Finding(statistic, count, size, expected, p_value, share - expected, reference_size)


def chance_finding(statistic: str, count: int, size: int, expected: float, reference_size: int) -> Finding:
    """A count against a chance the reference implies (exact binomial test)."""
    share = count / size if size else 0.0
    p_value = pvalues.binomial_greater(count, size, expected)
    return Finding(statistic, count, size, expected, p_value, share - expected, reference_size)


def column_kind(column: window_mod.Column) -> str:
    return NUMERIC if column.dtype == np.float64 else CATEGORICAL


def null_count(column: window_mod.Column) -> int:
    if column.dtype == np.float64:
        return int(np.count_nonzero(np.isnan(column)))
    return sum(1 for value in column if value is None)


def present_values(column: window_mod.Column) -> window_mod.Column:
    """The non-missing values of a column."""
    if column.dtype == np.float64:
        return column[~np.isnan(column)]
    return np.fromiter((value for value in column if value is not None), dtype=object)


def _fields(window: window_mod.Window) -> window_mod.FieldCounts:
    return window.fields if window.fields is not None else window_mod.FieldCounts()


class _QualityCheck(base.Detector[ConfigT], base.NeedsReference):
    """A check reporting a list of findings per window, one detail each, adjusted together."""

    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.QUALITY

    def reset(self) -> None:
        """Nothing is learned from windows: every window is judged against the reference alone."""

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        return conformance(rng)

    @abc.abstractmethod
    def _findings(self, window: window_mod.Window) -> list[tuple[str | None, Finding]]:
        """(feature or None for the records, finding) for every detail of this window."""

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        config = self.config
        if window.size < config.min_samples:
            raise base.CannotRun(
                f"{self.name}: {window.size} records, fewer than min_samples={config.min_samples}"
            )
        found = self._findings(window)
        details = tuple(self._detail(feature, finding, len(found), window) for feature, finding in found)
        failed = sum(1 for detail in details if detail.drifted)
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic="failed_checks",
            score=float(failed),
            threshold=1.0,
            drifted=failed > 0,
            reference_size=max((f.reference_size for _, f in found), default=0),
            current_size=window.size,
            model_version=window.model_version,
            segment=window.segment,
            details=details,
        )

    def _detail(
        self, feature: str | None, finding: Finding, tested: int, window: window_mod.Window
    ) -> base.DetectorResult:
        p_value = min(1.0, finding.p_value * tested)
        drifted = p_value < self.config.alpha and finding.effect >= self.config.min_increase
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=feature,
            statistic=finding.statistic,
            score=finding.share,
            threshold=finding.expected + self.config.min_increase,
            drifted=drifted,
            p_value=p_value,
            effect_size=finding.effect,
            reference_size=finding.reference_size,
            current_size=finding.size,
            missing_count=finding.count if finding.statistic == "null_share" else 0,
            model_version=window.model_version,
            segment=window.segment,
            extras={"affected": float(finding.count), "expected_share": finding.expected, **finding.extras},
        )


class _PerFeature(_QualityCheck[ConfigT]):
    """A check of each reference feature of the kinds it applies to."""

    kinds: ClassVar[frozenset[str]] = frozenset({NUMERIC, CATEGORICAL})

    def __init__(self, config: ConfigT) -> None:
        super().__init__(config)
        self._profiles: dict[str, Any] = {}

    def set_reference(self, reference: window_mod.Window) -> None:
        fields = _fields(reference)
        self._profiles = {
            name: self._profile(name, column, fields, reference.size)
            for name, column in reference.features.items()
            if column_kind(column) in self.kinds
        }

    @abc.abstractmethod
    def _profile(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, rows: int
    ) -> Any:
        """What the check keeps of one reference column."""

    @abc.abstractmethod
    def _check(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, profile: Any
    ) -> Finding | None:
        """The finding for one feature of a window; None when the check does not apply to it now."""

    def _findings(self, window: window_mod.Window) -> list[tuple[str | None, Finding]]:
        if not self._profiles:
            raise base.CannotRun(f"{self.name}: no reference feature of the kinds it checks")
        fields = _fields(window)
        found: list[tuple[str | None, Finding]] = []
        for name, profile in self._profiles.items():
            column = window.features.get(name)
            if column is None or column_kind(column) != profile.kind:
                continue
            finding = self._check(name, column, fields, profile)
            if finding is not None:
                found.append((name, finding))
        return found


@dataclasses.dataclass(frozen=True)
class _Counted:
    """A reference column's count of something (nulls, absent records, mistyped values)."""

    kind: str
    count: int
    rows: int


class _RateCheck(_PerFeature[QualityConfig]):
    """A per-feature count of records against the reference's count of the same thing."""

    config_class: ClassVar[type[base.DetectorConfig]] = QualityConfig
    statistic: ClassVar[str]

    @staticmethod
    @abc.abstractmethod
    def _count(name: str, column: window_mod.Column, fields: window_mod.FieldCounts) -> int:
        """How many records of the column (or window) show the problem."""

    def _profile(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, rows: int
    ) -> _Counted:
        return _Counted(column_kind(column), self._count(name, column, fields), rows)

    def _check(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, profile: _Counted
    ) -> Finding:
        count = self._count(name, column, fields)
        return rate_finding(self.statistic, count, len(column), profile.count, profile.rows)


class MissingValuesDetector(_RateCheck):
    """Share of nulls per feature against the reference's (a field present with value null)."""

    name: ClassVar[str] = "missing_values"
    statistic: ClassVar[str] = "null_share"

    @staticmethod
    def _count(name: str, column: window_mod.Column, fields: window_mod.FieldCounts) -> int:
        # A lacking field and a mistyped value are NaN/None in the column too; schema and
        # type_mismatch report those.
        return null_count(column) - fields.absent.get(name, 0) - fields.mistyped.get(name, 0)


class SchemaDetector(_RateCheck):
    """Records lacking a reference feature (a vanished or renamed field), and fields the reference
    never had (records level)."""

    name: ClassVar[str] = "schema"
    statistic: ClassVar[str] = "absent_share"

    def __init__(self, config: QualityConfig) -> None:
        super().__init__(config)
        self._rows = 0

    def set_reference(self, reference: window_mod.Window) -> None:
        super().set_reference(reference)
        self._rows = reference.size

    @staticmethod
    def _count(name: str, column: window_mod.Column, fields: window_mod.FieldCounts) -> int:
        return fields.absent.get(name, 0)

    def _findings(self, window: window_mod.Window) -> list[tuple[str | None, Finding]]:
        found = super()._findings(window)
        unknown = _fields(window).unknown
        # One records-level detail, always (a clean one resolves the incident): the new field
        # carried by the most records, the others named in its extras.
        commonest = sorted(unknown.items(), key=lambda item: (-item[1], item[0]))
        count = commonest[0][1] if commonest else 0
        finding = chance_finding("new_field_share", count, window.size, 1.0 / (self._rows + 1), self._rows)
        named = {f"new_field:{name}": n / window.size for name, n in commonest[:10]}
        found.append((None, dataclasses.replace(finding, extras=named)))
        return found


class TypeMismatchDetector(_RateCheck):
    """Share of values of the wrong type in numeric features (a string where a number belongs)."""

    name: ClassVar[str] = "type_mismatch"
    statistic: ClassVar[str] = "mistyped_share"
    kinds: ClassVar[frozenset[str]] = frozenset({NUMERIC})

    @staticmethod
    def _count(name: str, column: window_mod.Column, fields: window_mod.FieldCounts) -> int:
        return fields.mistyped.get(name, 0)


@dataclasses.dataclass(frozen=True)
class _Range:
    kind: str
    low: float
    high: float
    expected: float  # share of values outside by chance
    values: int  # reference values it was taken from


class OutOfRangeDetector(_PerFeature[OutOfRangeConfig]):
    """Share of numbers outside the reference's range widened by ``margin`` (or ``bounds``)."""

    name: ClassVar[str] = "out_of_range"
    config_class: ClassVar[type[base.DetectorConfig]] = OutOfRangeConfig
    kinds: ClassVar[frozenset[str]] = frozenset({NUMERIC})

    def _profile(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, rows: int
    ) -> _Range | None:
        values = present_values(column)
        if not len(values):
            return None
        chance = 2.0 / (len(values) + 1)  # a new value beyond the min or max of exchangeable data
        if name in self.config.bounds:
            low_bound, high_bound = self.config.bounds[name]
            low = -math.inf if low_bound is None else low_bound
            high = math.inf if high_bound is None else high_bound
            outside = int(np.count_nonzero((values < low) | (values > high)))
            return _Range(NUMERIC, low, high, max(chance, (outside + 1) / (len(values) + 2)), len(values))
        low, high = float(values.min()), float(values.max())
        widen = self.config.margin * ((high - low) or max(abs(high), 1.0))
        return _Range(NUMERIC, low - widen, high + widen, chance, len(values))

    def set_reference(self, reference: window_mod.Window) -> None:
        super().set_reference(reference)
        self._profiles = {name: profile for name, profile in self._profiles.items() if profile is not None}

    def _check(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, profile: _Range
    ) -> Finding:
        values = present_values(column)
        outside = int(np.count_nonzero((values < profile.low) | (values > profile.high)))
        finding = chance_finding("out_of_range_share", outside, len(values), profile.expected, profile.values)
        return dataclasses.replace(finding, extras={"low": profile.low, "high": profile.high})


@dataclasses.dataclass(frozen=True)
class _Categories:
    kind: str
    seen: frozenset[object]
    novelty: float  # Good-Turing: the chance that a new value is one the reference never had
    values: int


class UnseenCategoriesDetector(_PerFeature[QualityConfig]):
    """Share of a categorical feature's values that the reference never had."""

    name: ClassVar[str] = "unseen_categories"
    config_class: ClassVar[type[base.DetectorConfig]] = QualityConfig
    kinds: ClassVar[frozenset[str]] = frozenset({CATEGORICAL})

    def _profile(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, rows: int
    ) -> _Categories:
        counts = collections.Counter(present_values(column).tolist())
        values = sum(counts.values())
        singletons = sum(1 for n in counts.values() if n == 1)
        novelty = max(singletons / values, 1.0 / (values + 1)) if values else 1.0
        return _Categories(CATEGORICAL, frozenset(counts), novelty, values)

    def _check(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, profile: _Categories
    ) -> Finding:
        values = present_values(column)
        seen = profile.seen
        unseen = sum(1 for value in values if value not in seen)
        return chance_finding("unseen_share", unseen, len(values), profile.novelty, profile.values)


@dataclasses.dataclass(frozen=True)
class _Spread:
    kind: str
    top_share: float  # share of the reference's most common value
    values: int


class FrozenFeaturesDetector(_PerFeature[FrozenConfig]):
    """A window whose values of a feature are all equal, where the reference's vary."""

    name: ClassVar[str] = "frozen_features"
    config_class: ClassVar[type[base.DetectorConfig]] = FrozenConfig

    def _profile(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, rows: int
    ) -> _Spread:
        values = present_values(column)
        if not len(values):
            return _Spread(column_kind(column), 1.0, 0)
        _, counts = np.unique(
            values if values.dtype == np.float64 else values.astype(str), return_counts=True
        )
        return _Spread(column_kind(column), float(counts.max()) / len(values), len(values))

    def _check(
        self, name: str, column: window_mod.Column, fields: window_mod.FieldCounts, profile: _Spread
    ) -> Finding | None:
        values = present_values(column)
        if len(values) < 2:
            return None
        frozen = len(set(values.tolist())) == 1
        # All m values equal by chance: at most top_share ** (m - 1) (sum over values of q ** m).
        chance = profile.top_share ** (len(values) - 1)
        return Finding(
            statistic="frozen",
            count=len(values) if frozen else 0,
            size=len(values),
            expected=chance,
            p_value=chance if frozen else 1.0,
            effect=(1.0 - profile.top_share) if frozen else 0.0,
            reference_size=profile.values,
        )


class DuplicateIdsDetector(_QualityCheck[QualityConfig]):
    """Share of records whose request id repeats one earlier in the window (records level)."""

    name: ClassVar[str] = "duplicate_ids"
    config_class: ClassVar[type[base.DetectorConfig]] = QualityConfig

    def __init__(self, config: QualityConfig) -> None:
        super().__init__(config)
        self._reference: tuple[int, int] | None = None

    @staticmethod
    def _duplicates(ids: window_mod.ObjectArray) -> int:
        return len(ids) - len(set(ids.tolist()))

    def set_reference(self, reference: window_mod.Window) -> None:
        ids = reference.request_ids
        self._reference = (self._duplicates(ids), len(ids)) if ids is not None else None

    def _findings(self, window: window_mod.Window) -> list[tuple[str | None, Finding]]:
        if window.request_ids is None or self._reference is None:
            raise base.CannotRun("duplicate_ids: the windows carry no request ids")
        duplicates = self._duplicates(window.request_ids)
        reference_count, reference_size = self._reference
        return [
            (None, rate_finding("duplicate_share", duplicates, window.size, reference_count, reference_size))
        ]


# -- conformance examples ---------------------------------------------------------------------------

_COLOURS: Final = np.array(["red", "green", "blue", "black"], dtype=object)


def _stationary_window(rng: np.random.Generator, size: int) -> window_mod.Window:
    """A clean stream: 2 % nulls in a numeric and a categorical feature, unique ids."""
    amount = rng.normal(50.0, 10.0, size)
    amount[rng.random(size) < 0.02] = np.nan
    colour = _COLOURS[rng.integers(0, len(_COLOURS), size)]
    colour[rng.random(size) < 0.02] = None
    ids = np.array([f"r{rng.integers(0, 2**62)}" for _ in range(size)], dtype=object)
    return window_mod.Window(
        features={"amount": amount, "colour": colour, "age": rng.integers(18, 90, size).astype(np.float64)},
        request_ids=ids,
        fields=window_mod.FieldCounts(),
    )


def conformance(rng: np.random.Generator) -> base.ConformanceExample:
    """The stationary stream every quality check is checked on (tests/unit/detectors)."""

    def make_window(draw: np.random.Generator) -> window_mod.Window:
        return _stationary_window(draw, 500)

    return base.ConformanceExample({}, _stationary_window(rng, 5000), make_window, 0.01)


CHECKS: Final[tuple[type[_QualityCheck[Any]], ...]] = (
    MissingValuesDetector,
    SchemaDetector,
    TypeMismatchDetector,
    OutOfRangeDetector,
    UnseenCategoriesDetector,
    FrozenFeaturesDetector,
    DuplicateIdsDetector,
)
NAMES: Final[tuple[str, ...]] = tuple(cls.name for cls in CHECKS)

"""Drift on vector features (embeddings): kernel MMD, a domain classifier, the share of drifted components.

A vector feature is one input of fixed dimension (``Window.vectors``: name -> rows x dimension);
each detector judges every vector of the reference (or the configured ones) and reports one
per-vector verdict in ``details`` (``feature`` = the vector's name), so the policy counts, adjusts
and grades vectors as it does feature columns. Rows holding NaN (a record without the vector) are
left out and counted as missing.

Behavioural reference: Evidently 0.7's embedding-drift methods (``EmbeddingsDrift`` with ``mmd``,
``model`` and ``ratio``); README, Detection, states where the definitions match.

* ``vector_mmd``: unbiased MMD^2 with an RBF kernel, its bandwidth the median pairwise distance
  of the reference (fixed once, so windows are judged with one kernel), and a permutation p-value;
  torch, on CUDA when present. Components are not standardised: an embedding's components share
  one scale, and dividing a near-constant component by its tiny spread would let noise dominate.
* ``vector_domain_classifier``: can a logistic classifier tell window rows from reference rows?
  Cross-validated ROC AUC plus a rank test, as ``domain_classifier`` does for columns, on the
  reference's top principal directions and the distance from their span (hundreds of raw
  components would make every Newton step cost seconds; the distance still sees drift that leaves
  the reference's main directions).
* ``vector_component_drift``: Evidently's ``ratio``: each component drifted when its Wasserstein
  distance normed by the reference's spread reaches ``component_threshold``; the vector drifted
  when the share of drifted components exceeds ``drift_share`` (Evidently's 0.2; the component
  threshold is 0.15, not its 0.1: a distance floor has no p-value, and 0.1 sits inside the noise of
  sparse components at a few hundred rows).
"""

from __future__ import annotations

import abc
import dataclasses
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pydantic

from detectors import base, multivariate, stattests
from detectors import window as window_mod

FloatArray = multivariate.FloatArray
# The statistic of a vector with nothing to compare (absent, too few rows, wrong dimension).
NO_DATA = "no_data"


class VectorDriftConfig(base.DetectorConfig):
    """What every vector detector takes."""

    vectors: list[str] | None = pydantic.Field(
        None, description="Vector features to judge; null = every vector feature of the reference."
    )
    min_samples: int = pydantic.Field(
        20, ge=5, description="Fewer complete rows than this on either side: no verdict for that vector."
    )
    seed: int = pydantic.Field(0, description="Seed of the subsamples (and permutations, folds).")


class VectorMMDConfig(VectorDriftConfig, multivariate.KernelTestConfig):
    """The kernel test's settings (``mmd``'s) for each vector."""


class VectorDomainClassifierConfig(VectorDriftConfig, multivariate.DomainTestConfig):
    components: int = pydantic.Field(
        32, ge=1, le=1024, description="Principal directions of the reference the classifier sees."
    )
    max_samples: int = pydantic.Field(
        1000, ge=20, description="Rows per side at most (a seeded sample beyond)."
    )


class VectorComponentDriftConfig(VectorDriftConfig):
    component_threshold: float = pydantic.Field(
        0.15,
        gt=0,
        description="A component drifted when its normed Wasserstein distance reaches this. Evidently's "
        "0.1 flagged 23 of 60 stationary 200-row windows of digits (sparse pixels are noisy); 0.15 none.",
    )
    drift_share: float = pydantic.Field(
        0.2, ge=0, lt=1, description="The vector drifted when the share of drifted components exceeds this."
    )
    max_samples: int = pydantic.Field(
        5000, ge=20, description="Rows per side at most (a seeded sample beyond)."
    )


@dataclasses.dataclass(frozen=True)
class _Comparison:
    """What one vector's test found: the fields of its DetectorResult that differ per detector."""

    statistic: str
    score: float
    threshold: float
    drifted: bool
    higher_is_drift: bool
    p_value: float | None
    effect_size: float
    reference_size: int
    current_size: int
    extras: Mapping[str, float]


ConfigT = TypeVar("ConfigT", bound=VectorDriftConfig)
# (id of the reference array, detector, config) -> (a weak reference to that array, what _fit made).
# Fitted references are read, never changed, so suites share them; an entry whose array is gone
# is dropped at the next fit.
_SHARED_FITS: dict[tuple[int, str, str], tuple[weakref.ref[window_mod.VectorArray], Any]] = {}
FittedT = TypeVar("FittedT")


def complete_rows(vectors: window_mod.VectorArray) -> tuple[FloatArray, int]:
    """Rows without NaN, as float64, and how many rows had NaN (records that lacked the vector)."""
    incomplete = np.isnan(vectors).any(axis=1)
    return np.asarray(vectors[~incomplete], dtype=np.float64), int(incomplete.sum())


class _VectorDetector(base.Detector[ConfigT], base.NeedsReference, Generic[ConfigT, FittedT]):
    """The shared machinery: per-vector reference fitting, missing rows, no-data verdicts, the summary."""

    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.DATA_DRIFT

    def __init__(self, config: ConfigT) -> None:
        super().__init__(config)
        self._fitted: dict[str, tuple[FittedT, int]] = {}  # name -> (fitted, dimension)
        self._unusable = f"{self.name}: no reference set yet"

    def set_reference(self, reference: window_mod.Window) -> None:
        available = sorted(reference.vectors)
        wanted = list(self.config.vectors) if self.config.vectors is not None else available
        unknown = [name for name in wanted if name not in reference.vectors]
        if unknown:
            raise ValueError(
                f"{self.name}: vectors {unknown} are not vector features of the reference; "
                f"its vector features: {available}"
            )
        fitted: dict[str, tuple[FittedT, int]] = {}
        too_few: list[str] = []
        for name in wanted:
            rows, _ = complete_rows(reference.vectors[name])
            if len(rows) < self.config.min_samples:
                too_few.append(f"{name!r} has {len(rows)} complete reference rows")
                continue
            fitted[name] = (self._shared_fit(reference.vectors[name], rows), rows.shape[1])
        if too_few and self.config.vectors is not None:
            raise ValueError(
                f"{self.name}: vector {', '.join(too_few)}; min_samples is {self.config.min_samples}"
            )
        self._fitted = fitted
        # On by default, so neither is an error: most models have no vectors, and a vector few
        # reference records carry cannot be judged. Every window is skipped, saying why.
        self._unusable = f"{self.name}: the reference has no vector features" + (
            f" with min_samples={self.config.min_samples} complete rows ({', '.join(too_few)})"
            if too_few
            else ""
        )

    def reset(self) -> None:
        """Nothing is learned from windows: each verdict depends on the reference and the window only."""

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        if not self._fitted:
            raise base.CannotRun(self._unusable)
        details = tuple(
            self._vector_result(name, fitted, dimension, window)
            for name, (fitted, dimension) in self._fitted.items()
        )
        drifted = sum(1 for d in details if d.drifted)
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=None,
            statistic="share_of_drifted_vectors",
            score=drifted / len(details),
            # Any drifted vector makes the window drifted: each vector is a whole input of the model.
            threshold=1 / len(details),
            drifted=drifted > 0,
            reference_size=max(d.reference_size for d in details),
            current_size=window.size,
            missing_count=sum(d.missing_count for d in details),
            model_version=window.model_version,
            segment=window.segment,
            details=details,
            extras={"number_of_vectors": float(len(details)), "number_of_drifted_vectors": float(drifted)},
        )

    def _vector_result(
        self, name: str, fitted: FittedT, dimension: int, window: window_mod.Window
    ) -> base.DetectorResult:
        vectors = window.vectors.get(name)
        if vectors is None:
            return self._no_data(name, window, missing=window.size, dimension=dimension)
        if vectors.shape[1] != dimension:
            # The ingest dead-letters a wrong dimension; a window built elsewhere may still carry one.
            return self._no_data(
                name, window, missing=0, dimension=dimension, window_dimension=vectors.shape[1]
            )
        rows, missing = complete_rows(vectors)
        if len(rows) < self.config.min_samples:
            return self._no_data(name, window, missing=missing, dimension=dimension)
        found = self._compare(fitted, rows, np.random.default_rng(self.config.seed + 1))
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=name,
            statistic=found.statistic,
            score=found.score,
            threshold=found.threshold,
            drifted=found.drifted,
            higher_is_drift=found.higher_is_drift,
            p_value=found.p_value,
            effect_size=found.effect_size,
            reference_size=found.reference_size,
            current_size=found.current_size,
            missing_count=missing,
            model_version=window.model_version,
            segment=window.segment,
            extras={**found.extras, "dimension": float(dimension)},
        )

    def _no_data(
        self, name: str, window: window_mod.Window, *, missing: int, **dimensions: int
    ) -> base.DetectorResult:
        # Nothing to compare is not drift (as data_drift's no_data): reported, never drifted; the
        # sizes and dimensions say why (absent, too few complete rows, another dimension).
        return base.DetectorResult(
            detector=self.name,
            family=self.family,
            feature=name,
            statistic=NO_DATA,
            score=0.0,
            threshold=1.0,
            drifted=False,
            current_size=0,
            missing_count=missing,
            model_version=window.model_version,
            segment=window.segment,
            extras={key: float(value) for key, value in dimensions.items()},
        )

    def _shared_fit(self, array: window_mod.VectorArray, rows: FloatArray) -> FittedT:
        """``_fit`` once per reference array, detector and config, whatever the number of suites.

        The agent builds one suite per (version, segment) key, each fitting the same reference
        window: a 768-dimension vector's fitted reference is tens of MB, which up to
        ``window.max_open_windows`` keys must not hold once each.
        """
        key = (id(array), self.name, self.config.model_dump_json())
        found = _SHARED_FITS.get(key)
        if found is not None and found[0]() is array:
            return typing.cast(FittedT, found[1])
        for stale in [k for k, (ref, _) in _SHARED_FITS.items() if ref() is None]:
            del _SHARED_FITS[stale]
        fitted = self._fit(rows, np.random.default_rng(self.config.seed))
        _SHARED_FITS[key] = (weakref.ref(array), fitted)
        return fitted

    @abc.abstractmethod
    def _fit(self, rows: FloatArray, rng: np.random.Generator) -> FittedT:
        """What the verdicts need from the reference's complete rows of one vector."""

    @abc.abstractmethod
    def _compare(self, fitted: FittedT, rows: FloatArray, rng: np.random.Generator) -> _Comparison:
        """One vector's verdict on the window's complete rows."""


# --- kernel MMD ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _MMDReference:
    rows: FloatArray
    bandwidth: float


class VectorMMDDetector(_VectorDetector[VectorMMDConfig, _MMDReference]):
    """RBF-kernel MMD^2 (unbiased) per vector, median-heuristic bandwidth, permutation p-value."""

    name: ClassVar[str] = "vector_mmd"
    config_class: ClassVar[type[base.DetectorConfig]] = VectorMMDConfig

    def __init__(self, config: VectorMMDConfig) -> None:
        super().__init__(config)
        self.device = multivariate.resolve_device(config.device)

    def _fit(self, rows: FloatArray, rng: np.random.Generator) -> _MMDReference:
        sample = multivariate.subsample(rows, self.config.max_samples, rng)
        with multivariate.torch_threads(self.device, self.config.cpu_threads):
            return _MMDReference(sample, multivariate.median_distance(sample))

    def _compare(self, fitted: _MMDReference, rows: FloatArray, rng: np.random.Generator) -> _Comparison:
        current = multivariate.subsample(rows, self.config.max_samples, rng)
        with multivariate.torch_threads(self.device, self.config.cpu_threads):
            observed, p_value = multivariate.mmd_permutation_test(
                fitted.rows,
                current,
                bandwidth=fitted.bandwidth,
                n_permutations=self.config.n_permutations,
                seed=self.config.seed,
                device=self.device,
            )
        return _Comparison(
            statistic="mmd_permutation_p_value",
            score=p_value,
            threshold=self.config.alpha,
            drifted=p_value < self.config.alpha and observed >= self.config.min_effect,
            higher_is_drift=False,
            p_value=p_value,
            effect_size=observed,
            reference_size=len(fitted.rows),
            current_size=len(current),
            extras={"mmd2": observed, "bandwidth": fitted.bandwidth},
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # A permutation test: under no drift p < 0.05 in at most 5/101 of windows (see MMDDetector).
        return base.ConformanceExample(
            {"n_permutations": 100, "device": "cpu"}, _gaussian_vectors(rng, 200), _stationary(100), 0.05
        )


# --- domain classifier --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Projection:
    """Standardised scores on the reference's top principal directions, plus the distance from their span."""

    mean: FloatArray
    directions: FloatArray  # dimension x components
    score_scale: FloatArray  # components + 1 (the distance last)
    distance_mean: float
    encoded_reference: FloatArray

    def encode(self, rows: FloatArray) -> FloatArray:
        return _project(rows - self.mean, self.directions, self.distance_mean) / self.score_scale


def _project(centred: FloatArray, directions: FloatArray, distance_mean: float) -> FloatArray:
    """Scores on ``directions`` and log(1 + distance from their span), centred by ``distance_mean``."""
    scores = centred @ directions
    distance = np.log1p(np.linalg.norm(centred - scores @ directions.T, axis=1))
    return np.concatenate((scores, (distance - distance_mean)[:, None]), axis=1)


class VectorDomainClassifierDetector(_VectorDetector[VectorDomainClassifierConfig, _Projection]):
    """Can a classifier tell window vectors from reference ones? Cross-validated AUC plus a rank test."""

    name: ClassVar[str] = "vector_domain_classifier"
    config_class: ClassVar[type[base.DetectorConfig]] = VectorDomainClassifierConfig

    def _fit(self, rows: FloatArray, rng: np.random.Generator) -> _Projection:
        # The directions come from one half of the reference and the classifier's reference rows
        # from the other: rows that fitted the directions lie closer to their span than any new row
        # does, which a classifier learns (measured on digits: 14 of 60 stationary windows alarmed).
        shuffled = rows[rng.permutation(len(rows))]
        fitting = multivariate.subsample(shuffled[: len(rows) // 2], self.config.max_samples, rng)
        sample = multivariate.subsample(shuffled[len(rows) // 2 :], self.config.max_samples, rng)
        mean = fitting.mean(axis=0)
        # Right singular vectors of the centred rows are their principal directions, largest first.
        _, _, right = np.linalg.svd(fitting - mean, full_matrices=False)
        directions = right[: self.config.components].T
        raw = _project(sample - mean, directions, 0.0)
        distance_mean = float(raw[:, -1].mean())
        raw[:, -1] -= distance_mean
        spread = raw.std(axis=0)
        scale = np.where(spread > 1e-12, spread, 1.0)
        return _Projection(mean, directions, scale, distance_mean, raw / scale)

    def _compare(self, fitted: _Projection, rows: FloatArray, rng: np.random.Generator) -> _Comparison:
        current = fitted.encode(multivariate.subsample(rows, self.config.max_samples, rng))
        reference = fitted.encoded_reference
        auc, p_value = multivariate.domain_auc(reference, current, self.config.n_folds, self.config.l2, rng)
        return _Comparison(
            statistic="domain_classifier_auc",
            score=auc,
            threshold=self.config.auc_threshold,
            drifted=auc >= self.config.auc_threshold and p_value < self.config.alpha,
            higher_is_drift=True,
            p_value=p_value,
            effect_size=auc - 0.5,
            reference_size=len(reference),
            current_size=len(current),
            extras={"auc": auc, "components": float(fitted.directions.shape[1])},
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # Needs AUC >= 0.55 and p < 0.05, as domain_classifier; at these sizes that holds the rate
        # below 0.05 (the p-value alone is not calibrated: out-of-fold scores).
        return base.ConformanceExample({}, _gaussian_vectors(rng, 600), _stationary(300), 0.05)


# --- share of drifted components (Evidently's ratio) -------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SortedReference:
    sorted_rows: window_mod.VectorArray  # each column sorted
    norm: FloatArray  # per component: max(std, WASSERSTEIN_MIN_NORM), as Evidently norms


def wasserstein_columns(
    sorted_reference: npt.NDArray[np.floating[Any]], sorted_current: npt.NDArray[np.floating[Any]]
) -> FloatArray:
    """Wasserstein-1 distance of each column pair (columns sorted), as ``stattests.wasserstein`` does."""
    n_ref, n_cur = sorted_reference.shape[0], sorted_current.shape[0]
    if n_ref == n_cur:
        return np.asarray(np.abs(sorted_reference - sorted_current).mean(axis=0, dtype=np.float64))
    ref_rows, cur_rows, widths = stattests.quantile_pairing(n_ref, n_cur)
    gaps = np.abs(sorted_reference[ref_rows] - sorted_current[cur_rows])
    return np.asarray(widths @ gaps, dtype=np.float64)


class VectorComponentDriftDetector(_VectorDetector[VectorComponentDriftConfig, _SortedReference]):
    """Share of components whose normed Wasserstein distance reaches the threshold (Evidently's ratio)."""

    name: ClassVar[str] = "vector_component_drift"
    config_class: ClassVar[type[base.DetectorConfig]] = VectorComponentDriftConfig

    def _fit(self, rows: FloatArray, rng: np.random.Generator) -> _SortedReference:
        sample = multivariate.subsample(rows, self.config.max_samples, rng)
        norm = np.maximum(sample.std(axis=0), stattests.WASSERSTEIN_MIN_NORM)
        # Kept as float32, the window's type (rows came from float32: nothing is lost), at half the bytes.
        return _SortedReference(np.sort(sample, axis=0).astype(np.float32), norm)

    def _compare(self, fitted: _SortedReference, rows: FloatArray, rng: np.random.Generator) -> _Comparison:
        current = np.sort(multivariate.subsample(rows, self.config.max_samples, rng), axis=0)
        distances = wasserstein_columns(fitted.sorted_rows, current) / fitted.norm
        drifted_components = int(np.count_nonzero(distances >= self.config.component_threshold))
        share = drifted_components / len(distances)
        return _Comparison(
            statistic="share_of_drifted_components",
            score=share,
            threshold=self.config.drift_share,
            drifted=share > self.config.drift_share,
            higher_is_drift=True,
            p_value=None,
            # How far a typical component moved, in units of the reference's spread (the median:
            # a near-constant component, normed by a tiny spread, would swamp a mean).
            effect_size=float(np.median(distances)),
            reference_size=len(fitted.sorted_rows),
            current_size=len(current),
            extras={
                "number_of_components": float(len(distances)),
                "number_of_drifted_components": float(drifted_components),
                "max_normed_wasserstein": float(distances.max()),
            },
        )

    @classmethod
    def conformance_example(cls, rng: np.random.Generator) -> base.ConformanceExample:
        # 8 Gaussian components, 800 reference rows, windows of 300: a normed distance of 0.1 is far
        # in the tail for one component, and two must reach it together to exceed a 0.2 share.
        return base.ConformanceExample({}, _gaussian_vectors(rng, 800), _stationary(300), 0.05)


CLASSES: Sequence[type[base.Detector[Any]]] = (
    VectorMMDDetector,
    VectorDomainClassifierDetector,
    VectorComponentDriftDetector,
)
NAMES = tuple(cls.name for cls in CLASSES)


def _gaussian_vectors(rng: np.random.Generator, size: int, dimension: int = 8) -> window_mod.Window:
    # Correlated components, as an embedding's are; float32, as the window holds them.
    mixing = np.eye(dimension) + 0.3 * np.ones((dimension, dimension)) / dimension
    rows = (rng.normal(size=(size, dimension)) @ mixing).astype(np.float32)
    return window_mod.Window(features={}, vectors={"embedding": rows})


def _stationary(size: int) -> Callable[[np.random.Generator], window_mod.Window]:
    def make_window(draw: np.random.Generator) -> window_mod.Window:
        return _gaussian_vectors(draw, size)

    return make_window

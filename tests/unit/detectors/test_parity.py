"""Parity with Evidently 0.7: same seeded data through Report([DataDriftPreset()]) and our detector.

Every column must get the same test, the same verdict and the same score within 1e-6 relative.
p-values that underflow are compared with an absolute bound of 1e-12 as well (Evidently's z-test
p-value is 2 * (1 - Phi(|z|)), which is exactly 0 past |z| ~ 8.3; both sides compute it so, but
a relative bound means nothing at 1e-300).

Evidently is imported lazily (about 10 s, 290 MB) and each report is computed once per session.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors import data_drift, stattests
from detectors import window as window_mod

REL_TOL = 1e-6
ABS_TOL = 1e-12

Generator = Callable[[np.random.Generator, int, bool], np.ndarray]


def _normal(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.normal(0.3 if shifted else 0.0, 1.0, n)


def _heavy(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    values = rng.standard_t(1.5, n)
    return values * 1.5 + 0.4 if shifted else values


def _few(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.choice([0.0, 1.0, 2.0], n, p=[0.5, 0.2, 0.3] if shifted else [0.4, 0.3, 0.3])


def _binary(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return (rng.random(n) < (0.4 if shifted else 0.3)).astype(np.float64)


def _with_nan(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    values = rng.normal(0.15 if shifted else 0.0, 1.0, n)
    values[rng.random(n) < 0.1] = np.nan
    return values


def _colours(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    p = [0.25, 0.25, 0.3, 0.2] if shifted else [0.3, 0.3, 0.2, 0.2]
    return rng.choice(np.array(["red", "green", "blue", "grey"], dtype=object), n, p=p)


def _yes_no(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.55, 0.45] if shifted else [0.5, 0.5])


def _colours_missing(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    values = _colours(rng, n, shifted)
    values[rng.random(n) < 0.1] = None
    return values


GENERATORS: dict[str, Generator] = {
    "normal": _normal,
    "heavy": _heavy,
    "few": _few,
    "binary": _binary,
    "nan": _with_nan,
    "colours": _colours,
    "yes_no": _yes_no,
    "colours_missing": _colours_missing,
}
CATEGORICAL = {"colours", "yes_no", "colours_missing"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    seed: int
    reference_rows: int
    current_rows: int
    # column name -> (generator, shifted, stattest or None for Evidently's choice)
    columns: dict[str, tuple[str, bool, str | None]]


def _default_columns() -> dict[str, tuple[str, bool, str | None]]:
    return {
        f"{gen}_{'drift' if shifted else 'same'}": (gen, shifted, None)
        for gen in GENERATORS
        for shifted in (False, True)
    }


def _selected_columns() -> dict[str, tuple[str, bool, str | None]]:
    numeric = ["ks", "wasserstein", "psi", "kl_div", "jensenshannon", "hellinger", "anderson", "mannw", "ed"]
    columns: dict[str, tuple[str, bool, str | None]] = {}
    for test in numeric:
        columns[f"{test}_normal_drift"] = ("normal", True, test)
        columns[f"{test}_heavy_same"] = ("heavy", False, test)
    for test in ("psi", "kl_div", "jensenshannon", "hellinger", "chisquare", "z"):
        if test not in ("chisquare", "z"):  # Evidently accepts these two for categorical columns only
            columns[f"{test}_few_drift"] = ("few", True, test)
        columns[f"{test}_colours_drift"] = ("colours", True, test)
        columns[f"{test}_colours_missing_same"] = ("colours_missing", False, test)
    return columns


def _large_selected_columns() -> dict[str, tuple[str, bool, str | None]]:
    return {
        "ks_normal_drift": ("normal", True, "ks"),
        "ks_heavy_same": ("heavy", False, "ks"),
        "psi_normal_drift": ("normal", True, "psi"),
        "jensenshannon_heavy_same": ("heavy", False, "jensenshannon"),
        "hellinger_nan_drift": ("nan", True, "hellinger"),
        "ed_heavy_same": ("heavy", False, "ed"),
        "kl_div_colours_drift": ("colours", True, "kl_div"),
        "chisquare_colours_missing_same": ("colours_missing", False, "chisquare"),
    }


CASES = [
    Case("small-default-1", 1, 800, 600, _default_columns()),
    Case("small-default-2", 2, 1000, 300, _default_columns()),
    Case("large-default-1", 3, 3000, 2000, _default_columns()),
    Case("large-default-2", 4, 1001, 1500, _default_columns()),
    Case("small-selected", 5, 700, 500, _selected_columns()),
    # 11000 reference rows: K-S leaves scipy's exact p-value for the asymptotic one.
    Case("large-selected", 6, 11000, 2500, _large_selected_columns()),
]


def _frames(case: Case) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(case.seed)
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    for name, (gen, shifted, _) in case.columns.items():
        ref[name] = GENERATORS[gen](rng, case.reference_rows, False)
        cur[name] = GENERATORS[gen](rng, case.current_rows, shifted)
    return pd.DataFrame(ref), pd.DataFrame(cur)


@dataclasses.dataclass(frozen=True)
class EvidentlyColumn:
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclasses.dataclass(frozen=True)
class EvidentlyResult:
    columns: dict[str, EvidentlyColumn]
    drifted_count: float
    drifted_share: float


_METRIC = re.compile(
    r"ValueDrift\(column=(?P<column>.+),method=(?P<method>.+),threshold=(?P<threshold>[^,]+)\)"
)
_TEST = re.compile(r"Value Drift for column (?P<column>.+)")


def _run_evidently(case: Case) -> EvidentlyResult:
    evidently = pytest.importorskip("evidently", reason="evidently (a dev dependency) is not installed")
    from evidently import presets

    reference, current = _frames(case)
    definition = evidently.DataDefinition(
        numerical_columns=[c for c, (g, _, _) in case.columns.items() if g not in CATEGORICAL],
        categorical_columns=[c for c, (g, _, _) in case.columns.items() if g in CATEGORICAL],
    )
    per_column = {c: t for c, (_, _, t) in case.columns.items() if t is not None}
    report = evidently.Report(
        [presets.DataDriftPreset(per_column_method=per_column or None)], include_tests=True
    )
    snapshot = report.run(
        evidently.Dataset.from_pandas(current, data_definition=definition),
        evidently.Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    verdicts = {}
    for test in result["tests"]:
        match = _TEST.fullmatch(test["name"])
        if match:
            verdicts[match["column"]] = test["status"] == "FAIL"
    columns: dict[str, EvidentlyColumn] = {}
    count = share = math.nan
    for metric in result["metrics"]:
        match = _METRIC.fullmatch(metric["metric_name"])
        if match:
            column = match["column"]
            columns[column] = EvidentlyColumn(
                match["method"], float(metric["value"]), float(match["threshold"]), verdicts[column]
            )
        elif metric["metric_name"].startswith("DriftedColumnsCount"):
            count, share = float(metric["value"]["count"]), float(metric["value"]["share"])
    assert set(columns) == set(case.columns), "every column must have a ValueDrift metric"
    return EvidentlyResult(columns, count, share)


@pytest.fixture(scope="session")
def evidently_results() -> Callable[[Case], EvidentlyResult]:
    cache: dict[str, EvidentlyResult] = {}

    def get(case: Case) -> EvidentlyResult:
        if case.name not in cache:
            cache[case.name] = _run_evidently(case)
        return cache[case.name]

    return get


def _ours(case: Case) -> Any:
    reference, current = _frames(case)

    def window(frame: pd.DataFrame) -> window_mod.Window:
        return window_mod.Window(
            features={
                c: frame[c].to_numpy(dtype=object if g in CATEGORICAL else np.float64)
                for c, (g, _, _) in case.columns.items()
            }
        )

    per_column = {c: t for c, (_, _, t) in case.columns.items() if t is not None}
    detector = data_drift.DataDriftDetector(data_drift.DataDriftConfig(per_column_stattest=per_column))
    detector.set_reference(window(reference))
    return detector.update(window(current))


def _our_test_name(evidently_method: str) -> str:
    by_display = {t.display_name: t.name for t in stattests.STATTESTS.values()}
    return by_display.get(evidently_method, evidently_method)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_per_column_scores_and_verdicts_match_evidently(
    case: Case, evidently_results: Callable[[Case], EvidentlyResult]
) -> None:
    theirs = evidently_results(case)
    ours = {d.feature: d for d in _ours(case).details}
    mismatches = []
    for column, expected in theirs.columns.items():
        got = ours[column]
        same_score = math.isclose(got.score, expected.score, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        same = (
            got.statistic == _our_test_name(expected.method)
            and same_score
            and got.drifted == expected.drifted
            and math.isclose(got.threshold, expected.threshold)
        )
        if not same:
            mismatches.append(
                f"{column}: evidently {expected.method} {expected.score!r} drifted={expected.drifted} "
                f"threshold={expected.threshold}; ours {got.statistic} {got.score!r} drifted={got.drifted} "
                f"threshold={got.threshold}"
            )
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dataset_share_matches_evidently(
    case: Case, evidently_results: Callable[[Case], EvidentlyResult]
) -> None:
    theirs = evidently_results(case)
    ours = _ours(case)
    assert ours.extras["number_of_drifted_columns"] == theirs.drifted_count
    assert ours.score == pytest.approx(theirs.drifted_share, rel=1e-12)
    assert ours.drifted == (theirs.drifted_share >= 0.5)


def test_cases_cover_both_verdicts_and_every_default_test() -> None:
    """Guards the parity cases themselves: they must exercise drift and no drift, and each default."""
    chosen: set[str] = set()
    verdicts: set[bool] = set()
    for case in CASES:
        for detail in _ours(case).details:
            verdicts.add(detail.drifted)
            if case.columns[detail.feature or ""][2] is None:
                chosen.add(detail.statistic)
    assert verdicts == {True, False}
    assert chosen == {"ks", "chisquare", "z", "wasserstein", "jensenshannon"}


@pytest.mark.parametrize("shifted", [False, True])
def test_empirical_mmd_matches_evidently_given_the_same_permutations(shifted: bool) -> None:
    """Evidently draws MMD permutations from the global NumPy generator, unseeded, so a Report
    cannot be compared; its test function can, after seeding that generator as ours is seeded."""
    pytest.importorskip("evidently", reason="evidently (a dev dependency) is not installed")
    from evidently.legacy.calculations.stattests import mmd_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(7)
    # Sorted, because our samples are kept sorted and a permutation indexes positions.
    reference = np.sort(_heavy(rng, 300, False))
    current = np.sort(_heavy(rng, 250, shifted))
    np.random.seed(11)
    their_p, their_drift = mmd_stattest._mmd_stattest(
        pd.Series(reference), pd.Series(current), ColumnType.Numerical, 0.1
    )
    ours = stattests.numeric(
        stattests.numeric_sample(reference), stattests.numeric_sample(current), "empirical_mmd", seed=11
    )
    assert ours.score == pytest.approx(float(their_p), abs=1e-12)
    assert ours.drifted == bool(their_drift)

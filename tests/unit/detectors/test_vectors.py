"""Vector-feature drift (detectors.vectors) on real vectors: scikit-learn's digits, 64 dimensions.

The reference is one half of the images; stream windows sample the other half. Stationary windows
must stay quiet, and windows in which one digit class grows from its 10 % to 40 % must be flagged
by each detector and, through the default policy, open an incident.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from actions import base as actions_base
from detectors import base, registry, stattests, suite, vectors
from detectors import window as window_mod
from tests.unit.agent import factories
from tests.unit.detectors import digits as digits_mod

NAMES = vectors.NAMES
CPU = {"vector_mmd": {"device": "cpu"}}
STATIONARY_WINDOWS = 20
INCIDENT = "model/data_drift/all"
ALERT = actions_base.ActionKind.ALERT


def build(name: str, reference: window_mod.Window, **config: Any) -> base.Detector[Any]:
    detector = registry.default_registry().create(name, {**CPU.get(name, {}), **config})
    assert isinstance(detector, base.NeedsReference)
    detector.set_reference(reference)
    return detector


@pytest.mark.parametrize("name", NAMES)
def test_quiet_on_stationary_digits_and_flags_a_growing_class(name: str) -> None:
    data = digits_mod.digits()
    detector = build(name, data.reference())
    rng = np.random.default_rng(1)
    stationary = [detector.update(data.window(rng)) for _ in range(STATIONARY_WINDOWS)]
    # MMD's permutation test alarms in 5 % of stationary windows by construction (one expected
    # here); the domain classifier and the component share measured none in 60 such windows.
    assert sum(r.drifted for r in stationary) <= 2, [r.details[0].score for r in stationary]
    grown = [detector.update(data.window(rng, share=0.4)) for _ in range(5)]
    assert all(r.drifted for r in grown), [r.details[0].score for r in grown]
    detail = grown[0].details[0]
    assert (detail.detector, detail.family, detail.feature) == (name, base.DetectorFamily.DATA_DRIFT, "digit")
    assert detail.current_size == digits_mod.WINDOW_ROWS and detail.extras["dimension"] == 64.0
    assert grown[0].statistic == "share_of_drifted_vectors" and grown[0].score == 1.0


def test_verdict_strength_grows_with_the_share_of_the_growing_class() -> None:
    """Averaged over windows, each statistic moves towards drift as the class grows 10 % -> 40 %."""
    data = digits_mod.digits()
    detectors = {name: build(name, data.reference()) for name in NAMES}
    means: dict[str, list[float]] = {name: [] for name in NAMES}
    for share in (0.1, 0.25, 0.4):
        rng = np.random.default_rng(2)
        windows = [data.window(rng, share=share) for _ in range(4)]
        for name, detector in detectors.items():
            means[name].append(float(np.mean([detector.update(w).details[0].effect_size for w in windows])))
    for name, effects in means.items():
        assert effects[0] < effects[1] < effects[2], (name, effects)


def test_default_policy_opens_an_incident_on_the_growing_class_only() -> None:
    """The three detectors as one suite, their results through policy.decide (the default policy)."""
    data = digits_mod.digits()
    runner = suite.DetectorSuite(suite.SuiteConfig(detectors={name: CPU.get(name, {}) for name in NAMES}))
    runner.set_reference(data.reference())
    run = factories.Run()
    rng = np.random.default_rng(3)
    for index in range(STATIONARY_WINDOWS):
        run.window(runner.update(data.window(rng)), 60.0 * index)
    assert INCIDENT not in run.state.incidents or run.state.incidents[INCIDENT].status != "open"
    assert all(d.actions == () for d in run.decisions), [d.to_json() for d in run.decisions if d.actions]
    # The class grows from its 10 % to 40 % over 8 windows, then stays there for 4.
    shares = [*np.linspace(0.1, 0.4, 8), 0.4, 0.4, 0.4, 0.4]
    for offset, share in enumerate(shares):
        run.window(runner.update(data.window(rng, share=float(share))), 60.0 * (STATIONARY_WINDOWS + offset))
    opened = [d for d in run.decisions if "opened" in factories.events(d)]
    assert opened, [factories.events(d) for d in run.decisions]
    assert opened[0].rule_id == "data-drift" and opened[0].time >= 60.0 * STATIONARY_WINDOWS
    # It escalates to an alert (moderate: the share of drifted components, the classifier's AUC).
    alerted = [a for d in run.decisions for a in d.actions if a.kind is ALERT]
    assert alerted and alerted[0].incident_id == INCIDENT, [factories.kinds(d) for d in run.decisions]


def test_rows_without_the_vector_count_as_missing_and_too_few_rows_give_no_verdict() -> None:
    data = digits_mod.digits()
    rng = np.random.default_rng(4)
    images = data.images[data.window_rows(rng)].copy()
    images[:50] = np.nan
    for name in NAMES:
        detector = build(name, data.reference())
        detail = detector.update(digits_mod.vector_window(images)).details[0]
        assert detail.missing_count == 50 and detail.current_size <= 150, name
        assert detail.statistic != vectors.NO_DATA
        few = detector.update(digits_mod.vector_window(images[40:60])).details[0]
        assert few.statistic == vectors.NO_DATA and not few.drifted and few.missing_count == 10


def test_absent_vector_and_wrong_dimension_give_no_verdict_naming_the_dimensions() -> None:
    data = digits_mod.digits()
    detector = build("vector_component_drift", data.reference())
    absent = detector.update(window_mod.Window(features={"x": np.zeros(30)}))
    assert absent.details[0].statistic == vectors.NO_DATA and absent.details[0].missing_count == 30
    narrow = window_mod.Window(features={}, vectors={digits_mod.VECTOR: np.zeros((30, 32), np.float32)})
    wrong = detector.update(narrow).details[0]
    assert wrong.statistic == vectors.NO_DATA and not wrong.drifted
    assert wrong.extras == {"dimension": 64.0, "window_dimension": 32.0}


def test_a_reference_without_vectors_skips_quietly_and_unknown_names_fail_with_the_valid_ones() -> None:
    plain = window_mod.Window(features={"x": np.zeros(100)})
    for name in NAMES:
        detector = build(name, plain)
        with pytest.raises(base.CannotRun, match="no vector features"):
            detector.update(plain)
    with pytest.raises(ValueError, match=r"\['nope'\] are not vector features.*\['digit'\]"):
        build("vector_mmd", digits_mod.digits().reference(), vectors=["nope"])
    few = digits_mod.vector_window(np.zeros((10, 64), np.float32))
    # On by default: a vector too few reference records carry is skipped, saying why; named
    # explicitly in the config, it is a start-up error.
    with pytest.raises(base.CannotRun, match="'digit' has 10 complete reference rows"):
        build("vector_domain_classifier", few).update(few)
    with pytest.raises(ValueError, match="'digit' has 10 complete reference rows; min_samples is 20"):
        build("vector_domain_classifier", few, vectors=["digit"])


def test_every_vector_is_judged_on_its_own() -> None:
    """Two vectors: only the one that moved is drifted; the top-level share says one of two."""
    data = digits_mod.digits()
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(len(data.reference_rows), 16)).astype(np.float32)
    reference = window_mod.Window(
        features={}, vectors={"digit": data.images[data.reference_rows], "noise": noise}
    )
    detector = build("vector_mmd", reference)
    rows = data.window_rows(rng, share=0.4)
    window = window_mod.Window(
        features={},
        vectors={"digit": data.images[rows], "noise": rng.normal(size=(len(rows), 16)).astype(np.float32)},
    )
    result = detector.update(window)
    assert {d.feature: d.drifted for d in result.details} == {"digit": True, "noise": False}
    assert result.drifted and result.score == 0.5


@pytest.mark.parametrize(("n_ref", "n_cur"), [(300, 300), (500, 120), (77, 1000)])
def test_wasserstein_of_every_column_matches_the_one_column_version(n_ref: int, n_cur: int) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = np.sort(rng.normal(size=(n_ref, 5)), axis=0)
    current = np.sort(rng.normal(0.3, 1.2, size=(n_cur, 5)), axis=0)
    expected = [stattests.wasserstein(reference[:, i], current[:, i]) for i in range(5)]
    np.testing.assert_allclose(vectors.wasserstein_columns(reference, current), expected, rtol=1e-12)


def test_suites_fitted_on_one_reference_share_its_fitted_vectors() -> None:
    """One suite per (version, segment) key: the fitted reference is held once, not once per suite."""
    data = digits_mod.digits()
    reference = data.reference()
    config = suite.SuiteConfig(detectors={name: CPU.get(name, {}) for name in NAMES})
    first, second = suite.DetectorSuite(config), suite.DetectorSuite(config)
    first.set_reference(reference)
    second.set_reference(reference)
    for name in NAMES:
        one, two = first.detectors[name], second.detectors[name]
        assert isinstance(one, vectors._VectorDetector) and isinstance(two, vectors._VectorDetector)
        assert one._fitted["digit"][0] is two._fitted["digit"][0], name
    other = build("vector_component_drift", reference, component_threshold=0.3)
    assert isinstance(other, vectors._VectorDetector)
    shared = first.detectors["vector_component_drift"]
    assert isinstance(shared, vectors._VectorDetector)
    assert other._fitted["digit"][0] is not shared._fitted["digit"][0]  # another config fits anew
    # The same verdicts as a detector fitted on its own copy of the reference.
    alone = build("vector_component_drift", digits_mod.vector_window(data.images[data.reference_rows].copy()))
    window = data.window(np.random.default_rng(6), share=0.3)
    assert alone.update(window) == shared.update(window)

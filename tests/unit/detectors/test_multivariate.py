"""MMD and the domain classifier: quiet on the reference's distribution, fire on joint shifts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from detectors import base, multivariate
from detectors import window as window_mod


def correlated(rng: np.random.Generator, size: int, correlation: float = 0.8) -> window_mod.Window:
    a, b, c = rng.normal(size=(3, size))
    return window_mod.Window(
        features={"a": a, "b": correlation * a + np.sqrt(1 - correlation**2) * b, "c": c * 5.0 + 100.0}
    )


def mmd(reference: window_mod.Window, **config: object) -> multivariate.MMDDetector:
    detector = multivariate.MMDDetector(multivariate.MMDConfig.model_validate({"device": "cpu", **config}))
    detector.set_reference(reference)
    return detector


def test_mmd_quiet_on_same_distribution_and_fires_when_only_correlation_changes() -> None:
    rng = np.random.default_rng(0)
    detector = mmd(correlated(rng, 600), n_permutations=100)
    p_values = [detector.update(correlated(rng, 300)).p_value for _ in range(12)]
    assert sum(p < 0.05 for p in p_values) <= 2  # type: ignore[operator]
    # Same marginals (each column still standard normal), opposite correlation.
    flipped = detector.update(correlated(rng, 300, correlation=-0.8))
    assert flipped.drifted and flipped.p_value == pytest.approx(1 / 101)
    assert flipped.effect_size is not None and flipped.effect_size > max(
        detector.update(correlated(rng, 300)).effect_size or 0.0, 0.0
    )


def test_mmd_statistic_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), rng.normal(0.5, 1.0, size=(30, 2))
    observed, _ = multivariate.mmd_permutation_test(
        x, y, bandwidth=1.3, n_permutations=20, seed=0, device=torch.device("cpu")
    )

    def k(p: np.ndarray, q: np.ndarray) -> float:
        return float(np.exp(-np.sum((p - q) ** 2) / (2 * 1.3**2)))

    xx = sum(k(p, q) for p, q in itertools.permutations(x, 2)) / (40 * 39)
    yy = sum(k(p, q) for p, q in itertools.permutations(y, 2)) / (30 * 29)
    xy = sum(k(p, q) for p in x for q in y) / (40 * 30)
    assert observed == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_mmd_drops_and_counts_nan_rows_and_is_deterministic() -> None:
    rng = np.random.default_rng(2)
    detector = mmd(correlated(rng, 400), n_permutations=50)
    window = correlated(rng, 200)
    features = {name: column.copy() for name, column in window.features.items()}
    features["a"][:7] = np.nan
    with_nan = window_mod.Window(features=features, segment={"tier": "gold"})
    first, second = detector.update(with_nan), detector.update(with_nan)
    assert first == second
    assert first.missing_count == 7 and first.current_size == 193
    assert first.segment == {"tier": "gold"}


def test_mmd_subsamples_to_max_samples_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(3)
    detector = mmd(correlated(rng, 3000), max_samples=500, n_permutations=20)
    result = detector.update(correlated(rng, 2000))
    assert result.reference_size == 500 and result.current_size == 500
    with pytest.raises(base.CannotRun, match="min_samples"):
        detector.update(correlated(rng, 5))
    with pytest.raises(ValueError, match="not numeric columns"):
        mmd(correlated(rng, 100), features=["a", "nope"])


def test_device_choice_on_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert multivariate.resolve_device("auto").type == expected
    assert multivariate.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            multivariate.resolve_device("cuda")
    detector = multivariate.MMDDetector(multivariate.MMDConfig(device="auto"))
    assert detector.device.type == expected


def test_cpu_verdicts_run_on_the_configured_threads_and_restore_the_setting() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with multivariate.torch_threads(torch.device("cpu"), 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        # A failing verdict restores it too.
        with pytest.raises(RuntimeError), multivariate.torch_threads(torch.device("cpu"), 1):
            raise RuntimeError("verdict failed")
        assert torch.get_num_threads() == 2
        rng = np.random.default_rng(6)
        mmd(correlated(rng, 100), n_permutations=20, cpu_threads=1).update(correlated(rng, 50))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(ValueError, match="cpu_threads"):
        multivariate.MMDConfig.model_validate({"cpu_threads": 0})


def test_benchmark_reports_the_clock_difference() -> None:
    ticks = iter([10.0, 12.5])
    seconds = multivariate.mmd_benchmark(
        n_reference=100,
        n_current=100,
        n_features=3,
        n_permutations=20,
        device="cpu",
        clock=lambda: next(ticks),
    )
    assert seconds == 2.5


def mixed(
    rng: np.random.Generator, size: int, blue_share: float = 0.2, shift: float = 0.0
) -> window_mod.Window:
    window = correlated(rng, size)
    colours = np.array(["red", "green", "blue"], dtype=object)
    colour = rng.choice(colours, size=size, p=[0.8 - blue_share, 0.2, blue_share])
    features = dict(window.features)
    features["a"] = features["a"] + shift
    features["colour"] = colour
    return window_mod.Window(features=features)


def domain(reference: window_mod.Window) -> multivariate.DomainClassifierDetector:
    detector = multivariate.DomainClassifierDetector(multivariate.DomainClassifierConfig())
    detector.set_reference(reference)
    return detector


def test_domain_classifier_quiet_then_fires_on_numeric_and_categorical_shift() -> None:
    rng = np.random.default_rng(4)
    detector = domain(mixed(rng, 1000))
    quiet = [detector.update(mixed(rng, 400)) for _ in range(8)]
    assert sum(r.drifted for r in quiet) <= 1
    assert all(r.score < 0.56 for r in quiet)
    numeric = detector.update(mixed(rng, 400, shift=0.5))
    assert numeric.drifted and numeric.score >= 0.55
    assert (
        max(numeric.extras, key=lambda k: abs(numeric.extras[k]) if k.startswith("weight:") else 0.0)
        == "weight:a"
    )
    categorical = detector.update(mixed(rng, 400, blue_share=0.5))
    assert categorical.drifted
    assert "weight:colour=blue" in categorical.extras


def test_domain_classifier_handles_missing_values_and_unknown_categories() -> None:
    rng = np.random.default_rng(5)
    detector = domain(mixed(rng, 600))
    window = mixed(rng, 300)
    features = dict(window.features)
    features["b"] = features["b"].copy()
    features["b"][:30] = np.nan
    features["colour"] = features["colour"].copy()
    features["colour"][:5] = "purple"
    result = detector.update(window_mod.Window(features=features))
    assert result.missing_count == 30
    assert 0.0 <= result.score <= 1.0
    with pytest.raises(ValueError, match="not columns of the reference"):
        multivariate.DomainClassifierDetector(
            multivariate.DomainClassifierConfig(features=["zzz"])
        ).set_reference(window)

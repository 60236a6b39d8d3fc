"""Multiple-testing control: many features no longer multiply drifted counts on noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from actions import vocabulary
from agent import policy
from agent.policy import multiple_testing
from detectors import base
from tests.unit.agent import factories as f


def test_holm_matches_the_step_down_procedure_by_hand() -> None:
    # Sorted: 0.01 * 4, 0.02 * 3, 0.03 * 2 -> running max -> 0.04, 0.06, 0.06; 0.5 * 1 -> 0.5.
    assert multiple_testing.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert multiple_testing.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(0).random(40) ** 3
    expected = stats.false_discovery_control(p, method="bh")
    assert multiple_testing.benjamini_hochberg(p.tolist()) == pytest.approx(expected.tolist())


def _noise_window(n_features: int, p_of_first: float) -> list[base.DetectorResult]:
    """Per-feature verdicts: f0 at ``p_of_first`` (drifted at 0.05 alone), the rest clean."""
    return [f.pvalue_result("f0", drifted=True, p_value=p_of_first)] + [
        f.pvalue_result(f"f{i}", drifted=False) for i in range(1, n_features)
    ]


@pytest.mark.parametrize(
    ("method", "counted"), [("holm", False), ("benjamini_hochberg", False), ("none", True)]
)
def test_one_borderline_feature_of_a_hundred_is_noise_under_control(method: str, counted: bool) -> None:
    config = policy.PolicyConfig.model_validate({"multiple_testing": method})
    decision = f.Run(config=config).window(_noise_window(100, 0.01), 0.0)
    report = decision.incidents[0]
    assert report.drifted == (1 if counted else 0)
    assert report.window_severity is (vocabulary.Severity.MINOR if counted else vocabulary.Severity.NONE)


def test_a_real_shift_survives_the_adjustment() -> None:
    decision = f.Run().window(_noise_window(100, 1e-9), 0.0)
    assert decision.incidents[0].drifted == 1


def test_only_per_feature_p_value_tests_are_adjusted() -> None:
    units = policy.units_of(
        [
            f.pvalue_result("a", drifted=True, p_value=0.01),
            f.pvalue_result("b", drifted=False),
            f.perf_result(0.08),
        ]
    )
    adjusted = multiple_testing.adjusted_p_values(units, "holm")
    # Holm: 0.01 x 2 and 0.4 x 1; the performance result (one metric, no feature) is left alone.
    assert adjusted == pytest.approx({0: 0.02, 1: 0.4})

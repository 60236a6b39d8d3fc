"""Multiple-testing control over the per-feature p-values of one detector in one window.

A window of a 100-feature model runs 100 tests; at p < 0.05 each, about five features look
drifted in every window of a stationary stream. Before the policy counts features as drifted,
their p-values are adjusted together (per detector, per window):

* ``holm`` (default): Holm's step-down procedure; the chance that *any* feature of the window
  counts as drifted falsely stays below the test's threshold (family-wise error), whatever the
  number of features, and it is uniformly more powerful than Bonferroni;
* ``benjamini_hochberg``: the share of falsely drifted among the counted features stays below
  the threshold (false discovery rate): more features count when many truly move;
* ``none``: each feature on its own, as Evidently's column tests do.

Only p-value tests are adjusted (K-S, chi-square, Z, ...: Evidently's choice for references of
up to 1000 rows). Distance tests (Wasserstein, Jensen-Shannon: its choice above) have no
p-value; their threshold is an effect-size floor whose per-feature false-positive rate falls with
the window size instead of staying at alpha, so they need no adjustment. The detectors' own
verdicts (``DetectorResult.drifted``, Evidently parity) are unchanged: only the policy's count is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from agent.policy.units import Unit

Method = Literal["holm", "benjamini_hochberg", "none"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg-adjusted p-values (q-values), in the order given."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = m / np.arange(1, m + 1) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted.tolist()


def _is_p_value_test(unit: Unit) -> bool:
    result = unit.result
    return result.p_value is not None and not result.higher_is_drift and result.feature is not None


def adjusted_p_values(units: Sequence[Unit], method: Method) -> dict[int, float]:
    """Position in ``units`` -> adjusted p-value, for the per-feature p-value tests of each detector."""
    if method == "none":
        return {}
    adjust = holm if method == "holm" else benjamini_hochberg
    by_detector: dict[str, list[int]] = {}
    for position, unit in enumerate(units):
        if _is_p_value_test(unit):
            by_detector.setdefault(unit.result.detector, []).append(position)
    adjusted: dict[int, float] = {}
    for positions in by_detector.values():
        values = adjust([float(units[i].result.p_value or 0.0) for i in positions])
        adjusted.update(zip(positions, values, strict=True))
    return adjusted

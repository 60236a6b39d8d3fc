"""Many stationary windows of real vectors (digits, 64 dims) through the three vector detectors and the
default policy: how often each detector alarms, and that no incident opens. Seconds of computation,
so it lives with the slow tests; the counts are printed for the record (`pytest -s`).

Measured (200 windows of 200 rows, one reference of 898 images, seeds as below): README, Detectors.
"""

from __future__ import annotations

import numpy as np

from detectors import suite, vectors
from tests.unit.agent import factories
from tests.unit.detectors import digits as digits_mod

WINDOWS = 200


def test_stationary_digits_alarm_rarely_and_never_open_an_incident() -> None:
    data = digits_mod.digits()
    config = {name: {"device": "cpu"} if name == "vector_mmd" else {} for name in vectors.NAMES}
    runner = suite.DetectorSuite(suite.SuiteConfig(detectors=config))
    runner.set_reference(data.reference())
    run = factories.Run()
    rng = np.random.default_rng(31)
    alarms = dict.fromkeys(vectors.NAMES, 0)
    for index in range(WINDOWS):
        results = runner.update(data.window(rng))
        assert [r.detector for r in results] == list(vectors.NAMES) and not runner.failed
        for result in results:
            alarms[result.detector] += result.drifted
        run.window(results, 60.0 * index)
    opened = [d for d in run.decisions if "opened" in factories.events(d)]
    print(
        f"stationary digits, {WINDOWS} windows: alarms per detector {alarms}; incidents opened {len(opened)}"
    )
    assert opened == []
    # Measured at these seeds: vector_mmd 1, vector_domain_classifier 15 (7.5 %: its out-of-fold
    # rank test is not calibrated, the AUC floor holds it near the nominal 5 %; one reason it is
    # opt-in), vector_component_drift 0. A permutation test at p < 0.05 alarms in 5 % of windows
    # (10 expected; windows share one reference, so counts vary more than a binomial's).
    assert alarms["vector_mmd"] <= 20
    assert alarms["vector_domain_classifier"] <= 20
    assert alarms["vector_component_drift"] <= 10

"""The manual clock of the model-registry tests (registry, canary controller).

``clock`` is a different clock in the Kubernetes-side tests (tests/support/k8s/fixtures.py), so
it is not registered for the whole suite: each directory that uses this one imports it into its
conftest.py.
"""

from __future__ import annotations

import pytest

from tests.support.registry import helpers


@pytest.fixture
def clock() -> helpers.ManualClock:
    return helpers.ManualClock()

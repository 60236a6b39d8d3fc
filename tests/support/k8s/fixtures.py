"""The manual clock of the Kubernetes-side tests (deployment targets, leader election).

``clock`` is a different clock in the registry tests (tests/support/registry/fixtures.py), so it
is not registered for the whole suite: each directory that uses this one imports it into its
conftest.py.
"""

from __future__ import annotations

import pytest

from tests.support.k8s import helpers


@pytest.fixture
def clock() -> helpers.ManualClock:
    return helpers.ManualClock()

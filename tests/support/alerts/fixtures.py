"""Fixtures for the alert-sink tests: a local receiver, fake clocks, a fresh metrics registry.

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import prometheus_client
import pytest

from actions.alerts import base, delivery, metrics
from tests.support.alerts import receiver as receiver_mod


@pytest.fixture
def receiver() -> Iterator[receiver_mod.Receiver]:
    running = receiver_mod.Receiver()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def clocks() -> receiver_mod.FakeClocks:
    return receiver_mod.FakeClocks()


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


@pytest.fixture
def sink_metrics(registry: prometheus_client.CollectorRegistry) -> metrics.SinkMetrics:
    return metrics.SinkMetrics(registry)


@pytest.fixture
def env() -> dict[str, str]:
    """The environment the sinks read secrets from (never the process's own)."""
    return {}


@pytest.fixture
def runtime(clocks: receiver_mod.FakeClocks, env: dict[str, str]) -> base.Runtime:
    """The real urllib transport, fake time, a seeded jitter source and a private environment."""
    return base.Runtime(
        clocks=delivery.Clocks(clocks.monotonic, clocks.sleep, clocks.wall, random.Random(7)),
        environ=env,
    )

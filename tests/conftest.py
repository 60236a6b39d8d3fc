"""Root fixtures shared by every test directory (others add theirs in tests/<dir>/conftest.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from agent import broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[broker.EmbeddedBroker]:
    """One Tansu broker on a free loopback port for the whole session (memory storage).

    Tests must not stop or restart it: start an ``EmbeddedBroker`` of their own for that.
    """
    with broker.EmbeddedBroker("127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (Kafka allows [a-zA-Z0-9._-], at most 249 chars)."""
    stem = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return f"{stem}-{uuid.uuid4().hex[:8]}"

"""The registry tests' manual clock (the MLflow server itself is a session fixture in tests/conftest.py)."""

from __future__ import annotations

from tests.support.registry.fixtures import clock

__all__ = ["clock"]  # a fixture: pytest finds it here

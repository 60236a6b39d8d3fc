"""The registry tests' manual clock (the same one as tests/integration/mlflow)."""

from __future__ import annotations

from tests.support.registry.fixtures import clock

__all__ = ["clock"]  # a fixture: pytest finds it here

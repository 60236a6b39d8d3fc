"""The manual clock leader election runs on (the same one as tests/integration/kubernetes)."""

from __future__ import annotations

from tests.support.k8s.fixtures import clock

__all__ = ["clock"]  # a fixture: pytest finds it here

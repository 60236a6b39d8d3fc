"""The Kubernetes-side manual clock (``namespace`` and ``kserve_crd``: tests/integration/conftest.py)."""

from __future__ import annotations

from tests.support.k8s.fixtures import clock

__all__ = ["clock"]  # a fixture: pytest finds it here

"""The real API server tier for the chart's install/upgrade tests.

The API server fixtures live in tests/conftest.py (one server per session); ``namespace`` is
the one tests/k8s defines.
"""

from __future__ import annotations

from tests.k8s.conftest import namespace

__all__ = ["namespace"]

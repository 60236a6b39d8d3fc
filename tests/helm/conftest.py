"""The real API server tier for the chart's install/upgrade tests.

The fixtures are the ones tests/k8s defines, imported so both directories start the server the
same way. pytest keeps one instance per conftest directory, so a run over both directories starts
two servers; moving these fixtures to tests/conftest.py would share one.
"""

from __future__ import annotations

from tests.k8s.conftest import admin_api, kube_apiserver, namespace

__all__ = ["admin_api", "kube_apiserver", "namespace"]

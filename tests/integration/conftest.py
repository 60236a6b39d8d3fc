"""Fixtures of the real Kubernetes API-server tier (etcd + kube-apiserver, no kubelet).

The server itself and its admin client are session fixtures in tests/conftest.py. These are
used by tests/integration/kubernetes, tests/integration/helm and tests/integration/canary (which
names its namespaces on its own).
"""

from __future__ import annotations

import pytest
from kubernetes import client as k8s_client

from tests.support.k8s import helpers


@pytest.fixture
def namespace(admin_api: k8s_client.ApiClient) -> str:
    """A fresh namespace per test (never deleted: no namespace controller runs here)."""
    return helpers.create_namespace(admin_api)


@pytest.fixture(scope="session")
def kserve_crd(admin_api: k8s_client.ApiClient) -> None:
    helpers.install_inferenceservice_crd(admin_api)

"""Fixtures for the real Kubernetes API-server tier (etcd + kube-apiserver, no kubelet)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s_client

from tests.k8s import helpers


@pytest.fixture
def namespace(admin_api: k8s_client.ApiClient) -> str:
    """A fresh namespace per test (never deleted: no namespace controller runs here)."""
    return helpers.create_namespace(admin_api)


@pytest.fixture
def clock() -> helpers.ManualClock:
    return helpers.ManualClock()


@pytest.fixture(scope="session")
def kserve_crd(admin_api: k8s_client.ApiClient) -> None:
    helpers.install_inferenceservice_crd(admin_api)

"""Fixtures for the real Kubernetes API-server tier (etcd + kube-apiserver, no kubelet)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client

from tests.infra import kube
from tests.k8s import helpers


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[kube.KubeAPIServer]:
    """One API server for the whole session; tests isolate themselves by namespace."""
    try:
        binary = kube.build_apiserver()
    except kube.BuildUnavailable as exc:
        pytest.skip(f"kube-apiserver cannot be built on this machine ({exc}); CI installs apt + Go")
    with kube.KubeAPIServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def admin_api(kube_apiserver: kube.KubeAPIServer) -> Iterator[k8s_client.ApiClient]:
    api = kube_apiserver.admin_client()
    with api:
        yield api


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

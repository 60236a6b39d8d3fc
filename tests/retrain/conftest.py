"""Real servers for the retrain tests: MLflow (shared with the registry tests) and a kube-apiserver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client

from tests.infra import kube
from tests.infra import mlflow_server as mlflow_infra


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest) -> mlflow_infra.MlflowServer:
    """A real MLflow server (sqlite + local artifacts) on loopback, shared by the whole session."""
    return mlflow_infra.session_server(request.config)


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[kube.KubeAPIServer]:
    """etcd + kube-apiserver (no kubelet: the tests write Job status themselves)."""
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

"""Root fixtures shared by every test directory: the real servers, one of each per session.

Layout: tests/unit (no server process), tests/integration (real servers on loopback, started by
the fixtures below), tests/e2e (the whole agent), tests/architecture (import rules); shared
helpers live in tests/support and the server harnesses in tests/infra. Fixtures used by one
directory live in its conftest.py; fixture modules used by several are registered here, except
``clock``, which is one clock on the Kubernetes side and another in the registry tests: each
directory's conftest.py imports the one it means (tests/support/{k8s,registry}/fixtures.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from demo import broker

# The alert-sink fixtures (receiver, fake clocks, registry, ...): tests/unit/actions/alerts and
# tests/integration/alerting both use them.
pytest_plugins = ["tests.support.alerts.fixtures"]

if TYPE_CHECKING:  # the servers' client libraries are slow to import: only the tests that use them pay
    from kubernetes import client as k8s_client
    from mlflow.tracking import MlflowClient

    from tests.infra import kube
    from tests.infra import mlflow_server as mlflow_infra


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[broker.EmbeddedBroker]:
    """One Tansu broker on a free loopback port for the whole session (memory storage).

    Tests must not stop or restart it: start an ``EmbeddedBroker`` of their own for that.
    """
    with broker.EmbeddedBroker("127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (Kafka allows [a-zA-Z0-9._-], at most 249 chars)."""
    stem = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest) -> mlflow_infra.MlflowServer:
    """One real MLflow server (sqlite + local artifacts) on loopback for the whole session."""
    from tests.infra import mlflow_server as mlflow_infra

    return mlflow_infra.session_server(request.config)


@pytest.fixture
def mlflow_client(mlflow_server: mlflow_infra.MlflowServer) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.tracking_uri)


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[kube.KubeAPIServer]:
    """One etcd + kube-apiserver (no kubelet) for the session; tests isolate by namespace."""
    from tests.infra import kube

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

"""Fixtures for the rollback tests; tests/registry/conftest.py has the same two (one server serves both)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.infra import mlflow_server as mlflow_infra


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest) -> mlflow_infra.MlflowServer:
    """A real MLflow server (sqlite + local artifacts) on loopback, shared by the whole session."""
    return mlflow_infra.session_server(request.config)


@pytest.fixture
def mlflow_client(mlflow_server: mlflow_infra.MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.tracking_uri)

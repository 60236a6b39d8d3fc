"""Real servers for the controller tests: the MLflow registry, and etcd + kube-apiserver (no kubelet).

``kserve_crd`` comes from tests/integration/conftest.py; ``clock`` is the registry tests' clock
and ``namespace`` is named for the canary here.
"""

from __future__ import annotations

import pathlib

import pytest
from kubernetes import client as k8s_client
from mlflow.tracking import MlflowClient

from actions import base, model_registry
from tests.infra import mlflow_server as mlflow_infra
from tests.support.k8s import helpers as k8s_helpers
from tests.support.registry import helpers as registry_helpers
from tests.support.registry.fixtures import clock

__all__ = ["clock"]  # a fixture: pytest finds it here


class RecordingAlerts(base.ActionHandler):
    """The ALERT handler's contract, keeping what it is asked to send (the sinks have their own tests)."""

    kind = base.ActionKind.ALERT

    def __init__(self) -> None:
        self.requests: list[base.ActionRequest] = []

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        self.requests.append(request)
        return base.ActionOutcome(base.OutcomeStatus.SUCCEEDED)


@pytest.fixture
def model(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: registry_helpers.ManualClock
) -> model_registry.ModelRegistry:
    """A fresh registered model with versions 1 and 2; version 1 is the champion."""
    name = registry_helpers.unique_model_name("canary")
    registry_helpers.register_remote_versions(mlflow_client, name, 2)
    mlflow_client.set_registered_model_alias(name, "champion", "1")
    return model_registry.ModelRegistry(mlflow_server.tracking_uri, name, clock=clock)


@pytest.fixture
def alerts() -> RecordingAlerts:
    return RecordingAlerts()


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "state" / "canary.json"


@pytest.fixture
def namespace(admin_api: k8s_client.ApiClient) -> str:
    return k8s_helpers.create_namespace(admin_api, prefix="canary")

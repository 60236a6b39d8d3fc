"""Tracker against the real MLflow server: runs found by key, idempotent registration.

Its pyfunc packaging needs no server: tests/unit/actions/retrain/test_tracking.py.
"""

from __future__ import annotations

import pathlib
import uuid

import pytest
from mlflow.tracking import MlflowClient

from actions.retrain import tracking, trainer
from tests.infra import mlflow_server as mlflow_infra
from tests.support.retrain import samples

pytestmark = pytest.mark.integration


def test_registering_twice_with_one_key_keeps_one_version(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    """A crash between registering and recording the outcome must not register a second version."""
    name = f"churn-{uuid.uuid4().hex[:8]}"
    tracker = tracking.Tracker(mlflow_server.tracking_uri, f"retrain-{name}", name)
    assert tracker.find_run("key-1") is None and tracker.aliases() == {}
    run_id = tracker.start_run("key-1", {tracking.TAG_TRIGGER: "drift"}, {"strategy": "full", "rows": 80})
    found = tracker.find_run("key-1")
    assert found is not None and found[0] == run_id and found[1][tracking.TAG_KEY] == "key-1"
    model_dir = tmp_path / "m"
    trainer.train(samples.binary(80), samples.FAST_TRAINER).model.save(model_dir)
    assert tracker.log_model(run_id, model_dir) == f"runs:/{run_id}/model"
    assert tracker.register(run_id, "key-1", {tracking.TAG_TRIGGER: "drift"}) == "1"
    assert tracker.register(run_id, "key-1", {}) == "1"
    client = MlflowClient(mlflow_server.tracking_uri)
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    assert client.get_run(run_id).data.params == {"strategy": "full", "rows": "80"}

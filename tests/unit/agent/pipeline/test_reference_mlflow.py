"""load_from_mlflow against a real MLflow tracking store: sqlite backend and artifacts in a tmp dir."""

from __future__ import annotations

import json

import pytest

from agent import settings
from agent.ingest import parsing
from agent.pipeline import reference, reference_files

pytestmark = pytest.mark.slow  # MLflow import and sqlite schema creation take seconds

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="mlflow is a runtime dependency; install it")


@pytest.fixture(scope="module")
def run_with_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    # Module scope: creating the sqlite schema (MLflow's migrations) takes seconds.
    tmp_path = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(
        "reference-test", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    run = client.create_run(experiment_id)
    source = tmp_path / "reference.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(
                {
                    "request_id": f"r-{i}",
                    "timestamp": 1_700_000_000 + i,
                    "model_name": "m",
                    "model_version": "5",
                    "features": {"x": float(i)},
                    "prediction": 0.25,
                }
            )
            for i in range(30)
        )
    )
    client.log_artifact(run.info.run_id, str(source), artifact_path="data")
    client.set_terminated(run.info.run_id)
    return run.info.run_id, tracking_uri


def test_load_reference_artifact_from_an_mlflow_run(run_with_reference: tuple[str, str]) -> None:
    run_id, tracking_uri = run_with_reference
    parser = parsing.RecordParser(settings.FieldMappingSettings())
    loaded = reference_files.load_from_mlflow(
        run_id, "data/reference.jsonl", tracking_uri, parser, max_rows=10
    ).records
    assert len(loaded) == 10
    assert all(record.model_version == "5" for record in loaded)
    assert {record.request_id for record in loaded} <= {f"r-{i}" for i in range(30)}


def test_missing_artifact_names_run_and_path(run_with_reference: tuple[str, str]) -> None:
    run_id, tracking_uri = run_with_reference
    parser = parsing.RecordParser(settings.FieldMappingSettings())
    with pytest.raises(
        reference.ReferenceError, match=rf"artifact 'data/nope.parquet' of MLflow run '{run_id}'"
    ):
        reference_files.load_from_mlflow(run_id, "data/nope.parquet", tracking_uri, parser)

"""A retrain whose training runs as a Kubernetes Job: IN_PROGRESS until the Job completes, then gated.

Real MLflow server and real API server; the test plays the Job's pod (training into the shared
job directory) and the Job controller (writing the Complete condition)."""

from __future__ import annotations

import pathlib
import uuid

import pytest
from kubernetes import client as k8s_client
from mlflow.tracking import MlflowClient

from actions import base
from actions.retrain import config, dataset, handler, job, runners, tracking, trainer
from tests.infra import mlflow_server as mlflow_infra
from tests.support.retrain import samples

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
MERGE_PATCH = "application/merge-patch+json"


def test_job_runs_across_calls_and_the_candidate_is_registered_once_complete(
    mlflow_server: mlflow_infra.MlflowServer, admin_api: k8s_client.ApiClient, tmp_path: pathlib.Path
) -> None:
    namespace = f"retrain-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(admin_api).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace))
    )
    name = f"churn-{uuid.uuid4().hex[:8]}"
    settings = config.RetrainSettings(
        enabled=True,
        trainer=samples.FAST_TRAINER,
        strategy=config.StrategySettings(kind="sliding", min_train_rows=50),
        gates=config.GateSettings(latency=config.LatencyGateSettings(repeats=5, warmup=1)),
        runner=config.RunnerSettings(
            kind="kubernetes",
            work_dir=tmp_path / "work",
            kubernetes=config.KubernetesJobSettings(namespace=namespace),
        ),
    )
    calls = 0

    def provider() -> dataset.TrainingSet:
        nonlocal calls
        calls += 1
        return samples.binary(400)

    retrain = handler.RetrainHandler(
        settings,
        model_name=name,
        tracker=tracking.Tracker(mlflow_server.tracking_uri, f"retrain-{name}", name),
        runner=runners.build_runner(settings.runner, api_client=admin_api),
        provider=provider,
    )
    request = base.ActionRequest(
        kind=base.ActionKind.RETRAIN,
        model_name=name,
        idempotency_key="inc-7:retrain",
        incident_id="inc-7",
        severity="severe",
        reason="data drift on x2",
    )

    first = retrain.handle(request, dry_run=False)
    assert first.status is base.OutcomeStatus.IN_PROGRESS, first.message
    assert first.details["job"] == job.job_name("inc-7:retrain")
    still = retrain.handle(request, dry_run=False)
    assert still.status is base.OutcomeStatus.IN_PROGRESS

    # The pod trains from the staged directory, then the Job controller marks the Job Complete.
    spec = job.JobSpec(first.details["job"], (tmp_path / "work").resolve() / first.details["job"])
    assert trainer.main(["--job-dir", str(spec.work_dir)]) == 0
    k8s_client.BatchV1Api(admin_api).patch_namespaced_job_status(
        spec.name,
        namespace,
        {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}},
        _content_type=MERGE_PATCH,
    )

    done = retrain.handle(request, dry_run=False)
    assert done.status is base.OutcomeStatus.SUCCEEDED, done.message
    assert done.details["candidate_version"] == "1" and done.details["run_id"] == first.details["run_id"]
    assert calls == 1  # the rows were collected once, at the start
    version = MlflowClient(mlflow_server.tracking_uri).get_model_version(name, "1")
    assert (
        version.tags[tracking.TAG_KEY] == "inc-7:retrain" and version.tags[tracking.TAG_STRATEGY] == "sliding"
    )

"""The Kubernetes Job runner against a real API server. No kubelet runs here, so each test plays
the Job controller (and the pod's write into the shared job directory) itself."""

from __future__ import annotations

import dataclasses
import pathlib
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s_client

from actions.retrain import config, job, runners, trainer
from tests.support.retrain import samples

pytestmark = pytest.mark.e2e
MERGE_PATCH = "application/merge-patch+json"


@dataclasses.dataclass
class ManualClock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def namespace(admin_api: k8s_client.ApiClient) -> str:
    name = f"retrain-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(admin_api).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name))
    )
    return name


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> job.JobSpec:
    staged = job.JobSpec(job.job_name(f"incident-{uuid.uuid4().hex[:6]}"), tmp_path / "job")
    job.stage(staged, samples.binary(120), samples.binary(40, seed=2, id_prefix="h"), "{}", None)
    return staged


def make_runner(
    admin_api: k8s_client.ApiClient, namespace: str, clock: ManualClock
) -> runners.KubernetesJobRunner:
    settings = config.KubernetesJobSettings(namespace=namespace)
    return runners.KubernetesJobRunner(admin_api, settings, timeout_s=600, clock=clock)


def set_job_status(
    admin_api: k8s_client.ApiClient, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """Play the Job controller: write .status through the status subresource."""
    k8s_client.BatchV1Api(admin_api).patch_namespaced_job_status(
        name, namespace, {"status": status}, _content_type=MERGE_PATCH
    )


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": "2027-01-15T08:00:00Z",
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }


def test_submit_creates_the_job_from_the_template(
    admin_api: k8s_client.ApiClient, namespace: str, spec: job.JobSpec
) -> None:
    clock = ManualClock()
    runner = make_runner(admin_api, namespace, clock)
    runner.submit(spec)
    runner.submit(spec)  # a second call with the same job is a no-op, not an error
    created = k8s_client.BatchV1Api(admin_api).read_namespaced_job(spec.name, namespace).to_dict()
    container = created["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["--job-dir", str(spec.work_dir)]
    assert created["spec"]["active_deadline_seconds"] == 600
    assert created["metadata"]["labels"][runners.JOB_NAME_LABEL] == spec.name
    assert created["metadata"]["annotations"][runners.STARTED_AT_ANNOTATION] == repr(clock.now)
    jobs = k8s_client.BatchV1Api(admin_api).list_namespaced_job(namespace).items
    assert len(jobs) == 1
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.RUNNING and "0 active" in status.message


def test_complete_job_with_a_model_succeeds(
    admin_api: k8s_client.ApiClient, namespace: str, spec: job.JobSpec
) -> None:
    runner = make_runner(admin_api, namespace, ManualClock())
    runner.submit(spec)
    set_job_status(admin_api, namespace, spec.name, {"active": 1, "startTime": "2027-01-15T08:00:00Z"})
    assert runner.poll(spec).phase is runners.RunPhase.RUNNING
    # The pod's part: train into the shared job directory, then the controller marks it Complete.
    trainer.train(samples.binary(120), samples.FAST_TRAINER).model.save(spec.output_dir)
    set_job_status(
        admin_api,
        namespace,
        spec.name,
        {
            "active": 0,
            "succeeded": 1,
            "completionTime": "2027-01-15T08:05:00Z",
            "conditions": [condition("Complete")],
        },
    )
    assert runner.poll(spec).phase is runners.RunPhase.SUCCEEDED


def test_complete_job_without_a_model_fails_with_the_likely_cause(
    admin_api: k8s_client.ApiClient, namespace: str, spec: job.JobSpec
) -> None:
    runner = make_runner(admin_api, namespace, ManualClock())
    runner.submit(spec)
    set_job_status(admin_api, namespace, spec.name, {"succeeded": 1, "conditions": [condition("Complete")]})
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED and "mount the job directory" in status.message


def test_failed_job_fails_with_its_reason(
    admin_api: k8s_client.ApiClient, namespace: str, spec: job.JobSpec
) -> None:
    runner = make_runner(admin_api, namespace, ManualClock())
    runner.submit(spec)
    set_job_status(
        admin_api,
        namespace,
        spec.name,
        {
            "failed": 1,
            "conditions": [
                condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            ],
        },
    )
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED
    assert "BackoffLimitExceeded" in status.message and "backoff limit" in status.message


def test_job_past_the_timeout_is_deleted_and_fails(
    admin_api: k8s_client.ApiClient, namespace: str, spec: job.JobSpec
) -> None:
    clock = ManualClock()
    runner = make_runner(admin_api, namespace, clock)
    runner.submit(spec)
    clock.now += 599
    assert runner.poll(spec).phase is runners.RunPhase.RUNNING
    clock.now += 2
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED and "still running after 601s" in status.message
    # No garbage collector runs here: the Job object is gone or marked for deletion.
    remaining = k8s_client.BatchV1Api(admin_api).list_namespaced_job(namespace).items
    assert all(
        item.metadata is not None and item.metadata.deletion_timestamp is not None for item in remaining
    )


def test_an_unknown_job_is_pending_and_forbidden_access_is_not_retried(
    kube_apiserver: Any, namespace: str, spec: job.JobSpec
) -> None:
    admin = kube_apiserver.admin_client()
    assert make_runner(admin, namespace, ManualClock()).poll(spec).phase is runners.RunPhase.PENDING
    # The agent identity has no RBAC binding here: creating a Job is forbidden.
    agent_runner = make_runner(kube_apiserver.agent_client(), namespace, ManualClock())
    with pytest.raises(runners.RunnerError, match="HTTP 403") as raised:
        agent_runner.submit(spec)
    assert not raised.value.retriable

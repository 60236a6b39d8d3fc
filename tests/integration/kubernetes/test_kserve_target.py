"""KServeInferenceServiceTarget against the real API server with a minimal InferenceService CRD."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client

from actions.targets import base, dryrun, kserve
from tests.support.k8s import helpers

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("kserve_crd")]

V3_URI = "gs://models/churn/3"
V4_URI = "gs://models/churn/4"


def make_target(
    api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> kserve.KServeInferenceServiceTarget:
    return kserve.KServeInferenceServiceTarget(api, namespace=namespace, name="churn", clock=clock)


def predictor(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    obj = helpers.read_inferenceservice(api, namespace, "churn")
    result: dict[str, Any] = obj["spec"]["predictor"]
    return result


def test_canary_then_rollback_reverts_spec_and_traffic(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = make_target(admin_api, namespace, clock)
    assert target.current_version() == "3"

    target.set_traffic(base.TrafficSplit("3", "4", 10), V4_URI)

    spec = predictor(admin_api, namespace)
    assert spec["model"] == {"modelFormat": {"name": "pytorch"}, "storageUri": V4_URI}
    assert spec["canaryTrafficPercent"] == 10
    assert target.traffic() == base.TrafficSplit("3", "4", 10)
    assert target.current_version() == "3"

    target.set_traffic(base.TrafficSplit("3"), None)  # roll the canary back

    spec = predictor(admin_api, namespace)
    # All traffic to the previously rolled-out revision, and the spec no longer names model 4.
    assert spec["canaryTrafficPercent"] == 0
    assert spec["model"] == {"modelFormat": {"name": "pytorch"}, "storageUri": V3_URI}
    assert target.traffic() == base.TrafficSplit("3")
    annotations = helpers.read_inferenceservice(admin_api, namespace, "churn")["metadata"]["annotations"]
    assert "drift-agent.io/canary-version" not in annotations


def test_set_version_back_to_stable_mid_canary_is_the_instant_rollback(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_traffic(base.TrafficSplit("3", "4", 25), V4_URI)

    target.set_version("3", V3_URI)  # what the rollback handler calls

    spec = predictor(admin_api, namespace)
    assert (spec["canaryTrafficPercent"], spec["model"]["storageUri"]) == (0, V3_URI)
    after_rollback = helpers.read_inferenceservice(admin_api, namespace, "churn")["metadata"][
        "resourceVersion"
    ]
    target.set_version("3", V3_URI)  # a resumed handler confirms: nothing changes
    assert helpers.read_inferenceservice(admin_api, namespace, "churn")["metadata"]["resourceVersion"] == (
        after_rollback
    )


def test_promote_sends_all_traffic_to_the_new_model(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_traffic(base.TrafficSplit("3", "4", 50), V4_URI)

    target.set_version("4", V4_URI)

    spec = predictor(admin_api, namespace)
    assert "canaryTrafficPercent" not in spec
    assert spec["model"] == {"modelFormat": {"name": "pytorch"}, "storageUri": V4_URI}
    assert target.current_version() == "4"
    assert target.traffic() == base.TrafficSplit("4")
    annotations = helpers.read_inferenceservice(admin_api, namespace, "churn")["metadata"]["annotations"]
    assert annotations["drift-agent.io/previous-version"] == "3"


def test_rollout_status_reads_the_kserve_status(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_version("4", V4_URI)
    assert target.rollout_status().phase is base.RolloutPhase.PROGRESSING

    helpers.set_inferenceservice_status(
        admin_api,
        namespace,
        "churn",
        {"conditions": [{"type": "Ready", "status": "False", "reason": "Loading"}]},
    )
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.PROGRESSING
    assert "Loading" in status.message

    helpers.set_inferenceservice_status(
        admin_api,
        namespace,
        "churn",
        {
            "modelStatus": {
                "transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no such object: churn/4"},
            }
        },
    )
    status = target.rollout_status()
    assert status.phase is base.RolloutPhase.FAILED
    assert "ModelLoadFailed" in status.message
    assert "no such object" in status.message

    helpers.set_inferenceservice_status(
        admin_api,
        namespace,
        "churn",
        {
            "modelStatus": {"transitionStatus": "UpToDate"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    )
    assert target.rollout_status().phase is base.RolloutPhase.COMPLETE


def test_an_unready_service_fails_after_the_progress_deadline(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = make_target(admin_api, namespace, clock)
    target.set_version("4", V4_URI)
    helpers.set_inferenceservice_status(
        admin_api, namespace, "churn", {"conditions": [{"type": "Ready", "status": "False"}]}
    )
    clock.advance(1201)
    assert target.rollout_status().phase is base.RolloutPhase.FAILED


def test_dry_run_changes_nothing(
    admin_api: k8s_client.ApiClient, namespace: str, clock: helpers.ManualClock
) -> None:
    created = helpers.create_inferenceservice(admin_api, namespace, "churn", version="3", storage_uri=V3_URI)
    target = dryrun.DryRunTarget(make_target(admin_api, namespace, clock), clock=clock)

    target.set_traffic(base.TrafficSplit("3", "4", 10), V4_URI)
    target.set_version("4", V4_URI)

    after = helpers.read_inferenceservice(admin_api, namespace, "churn")
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert [i.operation for i in target.intentions] == ["set_traffic", "set_version"]

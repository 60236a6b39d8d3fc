"""The README's quick start ("Watch my model"), followed end to end: its config file as shipped,
addresses from the environment, a real broker and MLflow server, a real webhook receiver.

`check-config` passes it and says what is on; `drift-agent run` starts, joins labels, and an
input shift reaches the webhook as an alert.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from actions.alerts import webhook
from demo import broker
from tests.infra import mlflow_server as mlflow_infra
from tests.integration.scaleout import cluster
from tests.support.alerts import receiver as receiver_mod

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "config" / "quickstart.yaml"


def test_the_quick_start_alerts_a_webhook_on_drift(
    tmp_path: pathlib.Path,
    kafka_broker: broker.EmbeddedBroker,
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    receiver: receiver_mod.Receiver,
) -> None:
    run_id = uuid.uuid4().hex[:8]
    # What the quick start assumes exists: the model's topics and its registered model.
    kafka_broker.create_topics([f"predictions-{run_id}", f"labels-{run_id}"], partitions=2)
    mlflow_client.create_registered_model(f"churn-{run_id}")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DRIFT_AGENT_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "DRIFT_AGENT_REGISTRY__TRACKING_URI": mlflow_server.tracking_uri,
        "ALERT_WEBHOOK_URL": f"{receiver.url}/hooks/drift",
        "ALERT_WEBHOOK_SECRET": "quick-start-secret",
        # This broker is shared by the whole suite: the test's own names, set as a user would.
        "DRIFT_AGENT_KAFKA__PREDICTIONS_TOPIC": f"predictions-{run_id}",
        "DRIFT_AGENT_KAFKA__LABELS_TOPIC": f"labels-{run_id}",
        "DRIFT_AGENT_KAFKA__GROUP_ID": f"drift-agent-{run_id}",
        "DRIFT_AGENT_STREAMS__TOPIC_PREFIX": f"drift-agent-{run_id}",
        "DRIFT_AGENT_REGISTRY__REGISTERED_MODEL_NAME": f"churn-{run_id}",
        "DRIFT_AGENT_HTTP__PORT": "0",
    }
    checked = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", str(QUICKSTART)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert f"label-joined detectors (performance, adwin): on, labels from labels-{run_id}" in checked.stderr
    assert "alerts to team; pages to team" in checked.stderr

    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(QUICKSTART)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        cluster.produce_stream(
            kafka_broker.bootstrap_servers,
            f"predictions-{run_id}",
            f"labels-{run_id}",
            count=7000,
            drift_from=4000,
            seed=3,
            model="churn",
        )
        alerted = receiver.wait_for(1, timeout_s=180.0)
    finally:
        agent.terminate()
        agent.wait(60)
    said = log_path.read_text(errors="replace")
    assert "drift-agent started" in said and "rollback, retrain and canary: on" in said, said[-3000:]
    assert alerted, f"no alert reached the webhook; agent log tail:\n{said[-3000:]}"
    first = alerted[0]
    assert first.path == "/hooks/drift"
    # Signed with the secret from the environment, as the receiver verifies it.
    assert webhook.verify(
        b"quick-start-secret",
        first.body,
        first.headers.get(webhook.TIMESTAMP_HEADER.lower()),
        first.headers.get(webhook.SIGNATURE_HEADER.lower()),
        now=time.time(),
    )
    assert "data_drift" in json.dumps(first.json())

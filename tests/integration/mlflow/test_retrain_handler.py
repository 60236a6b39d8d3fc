"""RetrainHandler end to end, in process, against a real MLflow server: track, gate, register."""

from __future__ import annotations

import json
import pathlib
import sys
import time
import uuid
from collections.abc import Callable

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from actions import base
from actions.retrain import config, dataset, handler, model, runners, tracking
from tests.infra import mlflow_server as mlflow_infra
from tests.support.retrain import samples

pytestmark = pytest.mark.integration

QUICK_GATES = config.GateSettings(
    latency=config.LatencyGateSettings(repeats=5, warmup=1),
    slices=config.SliceGateSettings(segments=["region"], min_rows=20),
)


def settings(tmp_path: pathlib.Path, **changes: object) -> config.RetrainSettings:
    values: dict[str, object] = {
        "enabled": True,
        "trainer": samples.FAST_TRAINER,
        "gates": QUICK_GATES,
        "strategy": config.StrategySettings(kind="full", min_train_rows=50),
        "runner": config.RunnerSettings(kind="in_process", work_dir=tmp_path / "work"),
    }
    values.update(changes)
    return config.RetrainSettings.model_validate(values)


def request(key: str, model_name: str, **changes: object) -> base.ActionRequest:
    values: dict[str, object] = {
        "kind": base.ActionKind.RETRAIN,
        "model_name": model_name,
        "idempotency_key": key,
        "incident_id": f"inc-{key}",
        "severity": "severe",
        "reason": "concept drift on f1",
        "model_version": "1",
        "params": {"trigger": "concept_drift"},
    }
    values.update(changes)
    return base.ActionRequest(**values)  # type: ignore[arg-type]


class Traffic:
    """The agent's side: recent joined rows, counting how often they were asked for."""

    def __init__(self, rows: dataset.TrainingSet) -> None:
        self.rows = rows
        self.calls = 0

    def __call__(self) -> dataset.TrainingSet:
        self.calls += 1
        return self.rows


def make_handler(
    server: mlflow_infra.MlflowServer,
    model_name: str,
    retrain_settings: config.RetrainSettings,
    provider: Callable[[], dataset.TrainingSet],
    clock: Callable[[], float] = time.time,
) -> handler.RetrainHandler:
    tracker = tracking.Tracker(server.tracking_uri, f"retrain-{model_name}", model_name)
    return handler.RetrainHandler(
        retrain_settings,
        model_name=model_name,
        tracker=tracker,
        runner=runners.build_runner(retrain_settings.runner),
        provider=provider,
        clock=clock,
    )


def existing_model_with_champion(client: MlflowClient, name: str) -> None:
    """A model already serving: version 1 behind alias champion, source elsewhere."""
    client.create_registered_model(name)
    client.create_model_version(name, f"s3://models/{name}/v1", await_creation_for=0)
    client.set_registered_model_alias(name, "champion", "1")


def test_retrain_tracks_gates_and_registers_a_new_version_without_deploying(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    existing_model_with_champion(client, name)
    traffic = Traffic(samples.binary(500))
    retrain = make_handler(mlflow_server, name, settings(tmp_path), traffic)

    outcome = retrain.handle(request("k1", name), dry_run=False)

    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message
    assert outcome.details["candidate_version"] == "2"
    assert outcome.details["model_uri"] == f"models:/{name}/2"
    gate_names = [gate["name"] for gate in outcome.details["gates"]]
    assert {"performance:auc", "latency", "memory", "leakage:request_ids", "slice:region=eu"} <= set(
        gate_names
    )
    assert all(gate["passed"] for gate in outcome.details["gates"])

    # Nothing deployed: the champion alias still points at version 1, and no other alias appeared.
    assert dict(client.get_registered_model(name).aliases) == {"champion": "1"}
    version = client.get_model_version(name, "2")
    assert version.tags[tracking.TAG_KEY] == "k1"
    assert version.tags[tracking.TAG_INCIDENT] == "inc-k1"
    assert version.tags[tracking.TAG_TRIGGER] == "concept_drift"
    assert version.tags[tracking.TAG_STRATEGY] == "full"
    assert version.tags[tracking.TAG_SERVING_VERSION] == "1"

    run = client.get_run(outcome.details["run_id"])
    assert version.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert run.data.params["strategy"] == "full" and run.data.params["train_rows"] == "400"
    assert run.data.params["holdout_rows"] == "100" and run.data.params["trainer.seed"] == "7"
    assert run.data.metrics["gate.performance_auc"] == pytest.approx(
        next(g["measured"] for g in outcome.details["gates"] if g["name"] == "performance:auc")
    )
    rows = samples.binary(500)
    older = rows.take(np.arange(400))
    newest = rows.take(np.arange(400, 500))
    assert run.data.tags[tracking.TAG_TRAIN_FINGERPRINT] == older.fingerprint()
    assert run.data.tags[tracking.TAG_HOLDOUT_FINGERPRINT] == newest.fingerprint()
    assert version.tags[tracking.TAG_DATA_FINGERPRINT] == run.data.tags[tracking.TAG_DATA_FINGERPRINT]

    # The registered version loads as an MLflow pyfunc and answers like the trained model.
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(name, "2"),
        dst_path=str(tmp_path / "dl"),
        tracking_uri=mlflow_server.tracking_uri,
    )
    loaded = mlflow.pyfunc.load_model(local)
    frame = pd.DataFrame({k: list(v) for k, v in newest.features.items()})
    trained = model.TabularModel.load(pathlib.Path(run.data.tags[tracking.TAG_JOB]) / "output")
    assert list(loaded.predict(frame)) == list(trained.predict(newest.features))


def test_same_key_returns_the_recorded_result_without_training_again(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    traffic = Traffic(samples.binary(400))
    first = make_handler(mlflow_server, name, settings(tmp_path), traffic).handle(
        request("same", name), dry_run=False
    )
    assert first.status is base.OutcomeStatus.SUCCEEDED, first.message
    # A restarted agent (a new handler, same registry) gets the same answer and trains nothing.
    again = make_handler(mlflow_server, name, settings(tmp_path), traffic).handle(
        request("same", name), dry_run=False
    )
    assert again.status is base.OutcomeStatus.SUCCEEDED
    assert again.details["recorded"] is True
    assert again.details["candidate_version"] == first.details["candidate_version"]
    assert traffic.calls == 1
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    experiment = client.get_experiment_by_name(f"retrain-{name}")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 1


def test_failed_gate_rejects_the_candidate_and_registers_nothing(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    existing_model_with_champion(client, name)
    strict = QUICK_GATES.model_copy(
        update={"latency": config.LatencyGateSettings(max_p95_ms=1e-6, repeats=5)}
    )
    outcome = make_handler(
        mlflow_server, name, settings(tmp_path, gates=strict), Traffic(samples.binary(400))
    ).handle(request("slow", name), dry_run=False)
    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "gates_failed"
    assert len(outcome.details["failed_gates"]) == 1
    assert outcome.details["failed_gates"][0].startswith("latency: p95 ")
    assert "the serving model stays" in outcome.message and "needs < 1e-06 ms" in outcome.message
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    assert dict(client.get_registered_model(name).aliases) == {"champion": "1"}
    run = client.get_run(outcome.details["run_id"])
    assert run.info.status == "FAILED"
    recorded = json.loads(run.data.tags[tracking.TAG_OUTCOME])
    assert (
        recorded["status"] == "failed"
        and recorded["details"]["failed_gates"] == outcome.details["failed_gates"]
    )


def test_training_failure_keeps_the_serving_model(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    failing = config.RunnerSettings(kind="subprocess", work_dir=tmp_path / "work", command=["false"])
    outcome = make_handler(
        mlflow_server, name, settings(tmp_path, runner=failing), Traffic(samples.binary(300))
    ).handle(request("boom", name), dry_run=False)
    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "training_failed" and "exited with 1" in outcome.message


def test_dry_run_plans_but_tracks_and_trains_nothing(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    outcome = make_handler(mlflow_server, name, settings(tmp_path), Traffic(samples.binary(300))).handle(
        request("dry", name), dry_run=True
    )
    assert outcome.status is base.OutcomeStatus.SKIPPED and outcome.details["dry_run"] is True
    assert outcome.details["train_rows"] == 240 and outcome.details["holdout_rows"] == 60
    experiment = client.get_experiment_by_name(f"retrain-{name}")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
    assert not (tmp_path / "work").exists()


def test_refusals_name_the_problem(mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    retrain = make_handler(mlflow_server, name, settings(tmp_path), Traffic(samples.binary(60)))
    too_few = retrain.handle(request("few", name), dry_run=False)
    assert too_few.status is base.OutcomeStatus.FAILED and too_few.details["reason"] == "not_enough_data"
    assert "min_train_rows" in too_few.message
    wrong = retrain.handle(request("x", "other-model"), dry_run=False)
    assert wrong.details["reason"] == "invalid_request" and "other-model" in wrong.message
    quoted = retrain.handle(request("it's", name), dry_run=False)
    assert quoted.details["reason"] == "invalid_request"
    disabled = make_handler(
        mlflow_server, name, settings(tmp_path, enabled=False), Traffic(samples.binary(60))
    )
    assert disabled.handle(request("off", name), dry_run=False).status is base.OutcomeStatus.SKIPPED


def test_incremental_warm_starts_from_the_champion(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    first = make_handler(mlflow_server, name, settings(tmp_path), Traffic(samples.binary(400))).handle(
        request("base", name), dry_run=False
    )
    assert first.status is base.OutcomeStatus.SUCCEEDED, first.message
    client.set_registered_model_alias(name, "champion", first.details["candidate_version"])

    incremental = settings(
        tmp_path,
        strategy=config.StrategySettings(kind="incremental", window_records=300, min_train_rows=50),
        baseline="serving_model",
    )
    later = make_handler(
        mlflow_server, name, incremental, Traffic(samples.binary(400, seed=3, id_prefix="n"))
    )
    outcome = later.handle(request("inc", name), dry_run=False)
    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message
    run = client.get_run(outcome.details["run_id"])
    assert run.data.params["warm_start"] == "True" and run.data.params["strategy"] == "incremental"
    work = pathlib.Path(run.data.tags[tracking.TAG_JOB])
    assert model.is_model_dir(work / "warm_start")
    performance = next(g for g in outcome.details["gates"] if g["name"].startswith("performance:"))
    assert "(baseline model)" in performance["detail"]
    # The champion alias was not moved by the retrain.
    assert client.get_registered_model(name).aliases["champion"] == first.details["candidate_version"]


def test_incremental_without_a_champion_fails_clearly(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    incremental = settings(tmp_path, strategy=config.StrategySettings(kind="incremental", min_train_rows=50))
    outcome = make_handler(mlflow_server, name, incremental, Traffic(samples.binary(300))).handle(
        request("nochamp", name), dry_run=False
    )
    assert outcome.status is base.OutcomeStatus.FAILED and "use strategy full or sliding" in outcome.message


BROKEN_PYFUNC = """
import pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True)
(out / "MLmodel").write_text("flavors: {python_function: {loader_module: no_such_module_here}}")
"""


def test_a_candidate_that_cannot_be_loaded_is_rejected_not_crashed(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    broken = config.RunnerSettings(
        kind="subprocess",
        work_dir=tmp_path / "work",
        command=[sys.executable, "-c", BROKEN_PYFUNC, "{output}"],
    )
    retrain = make_handler(
        mlflow_server, name, settings(tmp_path, runner=broken), Traffic(samples.binary(300))
    )
    outcome = retrain.handle(request("broken", name), dry_run=False)
    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "candidate_unusable" and "no_such_module_here" in outcome.message
    assert client.get_run(outcome.details["run_id"]).info.status == "FAILED"
    assert client.search_model_versions(f"name='{name}'") == []


KILLING_PYFUNC = """
import pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / "code").mkdir(parents=True)
(out / "code" / "killer.py").write_text("import os\\nos._exit(7)\\n")
(out / "MLmodel").write_text("flavors: {python_function: {loader_module: killer, code: code}}")
"""


def test_a_candidate_whose_code_kills_its_process_never_runs_inside_the_agent(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    killing = config.RunnerSettings(
        kind="subprocess",
        work_dir=tmp_path / "work",
        command=[sys.executable, "-c", KILLING_PYFUNC, "{output}"],
    )
    retrain = make_handler(
        mlflow_server, name, settings(tmp_path, runner=killing), Traffic(samples.binary(300))
    )
    # Loaded in this process, the candidate would end it (and this test) with exit code 7.
    outcome = retrain.handle(request("killing", name), dry_run=False)
    assert outcome.status is base.OutcomeStatus.FAILED
    assert outcome.details["reason"] == "candidate_unusable"
    assert "the judging process exited with 7" in outcome.message


def test_from_settings_uses_the_registry_server_and_the_reference_file(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    samples.binary(150, seed=4, start=1_000_000_000.0, id_prefix="ref").to_parquet(
        tmp_path / "reference.parquet"
    )
    retrain = handler.RetrainHandler.from_settings(
        settings(tmp_path, reference_path=tmp_path / "reference.parquet"),
        model_name=name,
        provider=Traffic(samples.binary(300)),
        registry_tracking_uri=mlflow_server.tracking_uri,
    )
    outcome = retrain.handle(request("ref", name), dry_run=True)
    assert outcome.status is base.OutcomeStatus.SKIPPED
    # strategy full: 150 reference rows + the 240 recent rows that are not held out.
    assert outcome.details["train_rows"] == 390 and outcome.details["holdout_rows"] == 60
    with pytest.raises(ValueError, match=r"set retrain\.tracking_uri or registry\.tracking_uri"):
        handler.RetrainHandler.from_settings(
            settings(tmp_path), model_name=name, provider=Traffic(samples.binary(10))
        )


WAIT_FOR_300_ROWS_AFTER_THE_CHANGE = config.StrategySettings(
    kind="sliding", min_train_rows=50, min_rows_after_change=300, change_wait_s=600
)


def test_a_retrain_soon_after_the_change_waits_for_rows_of_the_new_relationship(
    mlflow_server: mlflow_infra.MlflowServer, tmp_path: pathlib.Path
) -> None:
    client = MlflowClient(mlflow_server.tracking_uri)
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    existing_model_with_champion(client, name)
    # The serving model's errors rose at row 1500: 100 of the 1600 training rows come after.
    traffic = Traffic(samples.served_errors_rising_at(samples.binary(2000), 1500))
    retrain = make_handler(
        mlflow_server,
        name,
        settings(tmp_path, strategy=WAIT_FOR_300_ROWS_AFTER_THE_CHANGE),
        traffic,
        clock=lambda: 1_000.0,
    )
    opened = request("k-wait", name, params={"trigger": "performance", "since": 990.0})

    waiting = retrain.handle(opened, dry_run=False)
    assert waiting.status is base.OutcomeStatus.IN_PROGRESS, waiting.message
    assert waiting.details["reason"] == "waiting_for_data"
    assert waiting.details["train_rows"] < 300 and waiting.details[base.RETRY_AT] == 1_005.0
    assert "min_rows_after_change=300" in waiting.message
    assert len(client.search_model_versions(f"name='{name}'")) == 1  # nothing trained yet

    # More labelled traffic after the change: now it trains, on the rows after the change only.
    traffic.rows = samples.served_errors_rising_at(samples.binary(3000), 1500)
    trained = retrain.handle(opened, dry_run=False)
    assert trained.status is base.OutcomeStatus.SUCCEEDED, trained.message
    run = client.get_run(trained.details["run_id"])
    started = float(run.data.params["trained_since_change_at"])
    assert abs(started - traffic.rows.timestamps[1500]) <= 100
    assert int(run.data.params["train_rows"]) < 2400 - 1300

    # Opened beyond change_wait_s ago: no wait, it trains on what there is.
    late = make_handler(
        mlflow_server,
        name,
        settings(tmp_path, strategy=WAIT_FOR_300_ROWS_AFTER_THE_CHANGE),
        Traffic(samples.served_errors_rising_at(samples.binary(2000), 1500)),
        clock=lambda: 2_000.0,
    )
    outcome = late.handle(request("k-late", name, params={"since": 1_000.0}), dry_run=False)
    assert outcome.status is base.OutcomeStatus.SUCCEEDED, outcome.message

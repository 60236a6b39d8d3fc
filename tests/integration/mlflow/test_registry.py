"""ModelRegistry against a real MLflow server: aliases, history tags, candidate choice, storage URIs."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from mlflow.tracking import MlflowClient

from actions import model_registry
from tests.infra import mlflow_server as mlflow_infra
from tests.support.registry import helpers

pytestmark = pytest.mark.integration


def _registry(
    server: mlflow_infra.MlflowServer, name: str, clock: helpers.ManualClock, min_windows: int = 1
) -> model_registry.ModelRegistry:
    return model_registry.ModelRegistry(
        server.tracking_uri, name, min_healthy_windows=min_windows, clock=clock
    )


def test_aliases_are_set_moved_and_read_from_the_registered_model(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 3)
    reg = _registry(mlflow_server, name, clock)

    assert reg.aliases() == {}
    reg.set_alias(model_registry.Alias.CHAMPION, "2")
    reg.set_alias("previous", "1")
    reg.set_alias(model_registry.Alias.CHALLENGER, "3")
    assert reg.aliases() == {"champion": "2", "previous": "1", "challenger": "3"}

    reg.set_alias(model_registry.Alias.CHAMPION, "3")  # an alias names one version: setting it moves it
    assert reg.alias(model_registry.Alias.CHAMPION) == "3"
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == "3"
    with pytest.raises(ValueError, match="champ"):
        reg.set_alias("champ", "1")


def test_history_tags_are_written_under_documented_names_and_parsed_back(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 1)
    reg = _registry(mlflow_server, name, clock)

    reg.mark_deployed("1", at=100.0)
    reg.mark_deployed("1", at=100.0)  # a resumed rollback repeats the same time: no second entry
    reg.mark_deployed("1", at=250.0)
    clock.now = 300.0
    reg.mark_healthy("1")
    clock.now = 400.0
    reg.mark_healthy("1", windows=2)

    info = reg.version("1")
    assert info.deployed_at == (100.0, 250.0)
    assert info.health is model_registry.Health.HEALTHY
    assert info.healthy_windows == 3
    assert info.healthy_at == 400.0
    assert info.source == helpers.storage_source(name, 1)

    reg.mark_rolled_back("1", "error rate 12% > 5%", at=500.0)
    raw = mlflow_client.get_model_version(name, "1").tags
    assert raw[model_registry.TAG_HEALTH] == "rolled_back"
    assert raw[model_registry.TAG_HEALTH_REASON] == "error rate 12% > 5%"
    assert float(raw[model_registry.TAG_ROLLED_BACK_AT]) == 500.0
    assert json.loads(raw[model_registry.TAG_DEPLOYED_AT]) == [100.0, 250.0]
    assert raw[model_registry.TAG_HEALTHY_WINDOWS] == "3"


def test_last_healthy_version_skips_a_version_that_was_itself_rolled_back(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    # 1, 2, 3 served healthily in turn; 4 served healthily for a while and was then rolled back;
    # 5 serves now. Rolling back from 5 must go to 3, not to 4 ("5 minus one").
    # (The history is written with the versions, in one call each; the test above checks that
    # mark_deployed / mark_healthy write exactly these tags.)
    name = helpers.unique_model_name()
    history = {
        n: helpers.served_well(deployed_at=100.0 * n, healthy_at=100.0 * n + 50.0) for n in range(1, 5)
    }
    history[5] = {model_registry.TAG_DEPLOYED_AT: "[500.0]"}
    helpers.register_remote_versions(mlflow_client, name, 5, tags=history)
    reg = _registry(mlflow_server, name, clock)
    assert reg.last_healthy_version(exclude={"5"}) == "4"
    reg.mark_rolled_back("4", "latency p99 doubled", at=480.0)

    assert reg.last_healthy_version(exclude={"5"}) == "3"
    assert reg.last_healthy_version(exclude={"5", "3"}) == "2"

    # The order is when a version last served healthily, not its number: 1 served well again later.
    clock.now = 600.0
    reg.mark_healthy("1")
    assert reg.last_healthy_version(exclude={"5"}) == "1"


def test_last_healthy_version_trusts_only_versions_seen_serving_enough_clean_windows(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 3)
    reg = _registry(mlflow_server, name, clock, min_windows=2)

    assert reg.last_healthy_version() is None  # no history at all: nothing is a safe target
    reg.mark_healthy("1")
    assert reg.last_healthy_version() is None  # one clean window < min_healthy_windows=2
    reg.mark_healthy("1")
    assert reg.last_healthy_version() == "1"
    reg.mark_healthy("2", windows=5)
    reg.mark_unhealthy("2", "drift on 6 of 20 features")
    assert reg.last_healthy_version() == "1"


def test_unreadable_tags_read_as_absent_instead_of_failing(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    # Tags are editable by anyone in the MLflow UI; a typo there must not stop a rollback.
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 1)
    mlflow_client.set_model_version_tag(name, "1", model_registry.TAG_DEPLOYED_AT, "yesterday")
    mlflow_client.set_model_version_tag(name, "1", model_registry.TAG_HEALTH, "fine I guess")
    mlflow_client.set_model_version_tag(name, "1", model_registry.TAG_HEALTHY_WINDOWS, "many")
    mlflow_client.set_registered_model_tag(name, model_registry.MODEL_TAG_ROLLBACKS, "[{not json")
    reg = _registry(mlflow_server, name, clock)

    info = reg.version("1")
    assert (info.deployed_at, info.health, info.healthy_windows) == ((), None, 0)
    assert reg.rollbacks() == []
    assert reg.last_healthy_version() is None

    mlflow_client.set_registered_model_tag(
        name, model_registry.MODEL_TAG_ROLLBACKS, json.dumps([{"key": "only-a-key"}, _entry("k1").to_json()])
    )
    assert [entry.key for entry in reg.rollbacks()] == ["k1"]


def _entry(key: str, started_at: float = 10.0) -> model_registry.RollbackEntry:
    return model_registry.RollbackEntry(
        key=key,
        from_version="5",
        to_version="3",
        model_uri="s3://models/m/v3",
        forced=False,
        reason="drift",
        started_at=started_at,
    )


def test_rollback_journal_replaces_by_key_and_keeps_the_newest_entries(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    name = helpers.unique_model_name()
    mlflow_client.create_registered_model(name)
    reg = _registry(mlflow_server, name, clock)

    reg.record_rollback(_entry("k1"))
    reg.record_rollback(_entry("k2", started_at=15.0))
    finished = dataclasses.replace(_entry("k1"), completed_at=20.0, result="succeeded")
    reg.record_rollback(finished)
    # Replaced in place: the journal stays in the order rollbacks started.
    assert reg.rollbacks() == [finished, _entry("k2", started_at=15.0)]
    assert reg.rollback("k1") == finished
    assert reg.rollback("nope") is None

    # Written in one go (one tag write per entry would cost a call each): the cap still holds.
    overflow = [_entry(f"k{n}", started_at=float(n)) for n in range(2, model_registry.JOURNAL_LENGTH + 3)]
    mlflow_client.set_registered_model_tag(
        name,
        model_registry.MODEL_TAG_ROLLBACKS,
        json.dumps([e.to_json() for e in [finished, *overflow[1:-1]]]),
    )
    reg.record_rollback(overflow[-1])
    keys = [entry.key for entry in reg.rollbacks()]
    assert len(keys) == model_registry.JOURNAL_LENGTH
    assert keys[-1] == overflow[-1].key
    assert "k1" not in keys


def test_resolve_uri_follows_a_runs_source_to_the_run_artifacts(
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    clock: helpers.ManualClock,
    tmp_path: pathlib.Path,
) -> None:
    name = helpers.unique_model_name()
    mlflow_client.create_registered_model(name)
    version = helpers.register_run_version(mlflow_client, name, tmp_path, "weights of v1")
    reg = _registry(mlflow_server, name, clock)
    reg.set_alias(model_registry.Alias.CHAMPION, version)

    by_version = reg.resolve_uri(f"models:/{name}/{version}")
    by_alias = reg.resolve_uri(f"models:/{name}@champion")

    assert by_version == by_alias == reg.model_uri(version)
    assert not by_version.startswith(("runs:/", "models:/"))
    # The URI is where the artifact really is: a storage initializer could copy it from there.
    stored = pathlib.Path(by_version) / "weights.txt"
    assert stored.read_text(encoding="utf-8") == "weights of v1"
    assert mlflow_server.artifact_root in stored.parents


def test_resolve_uri_follows_a_logged_model_source(
    mlflow_server: mlflow_infra.MlflowServer,
    mlflow_client: MlflowClient,
    clock: helpers.ManualClock,
    tmp_path: pathlib.Path,
) -> None:
    name = helpers.unique_model_name()
    mlflow_client.create_registered_model(name)
    version, model_id = helpers.register_logged_model_version(mlflow_client, name, tmp_path, "logged weights")
    reg = _registry(mlflow_server, name, clock)
    reg.set_alias(model_registry.Alias.CHALLENGER, version)

    for ref in (f"models:/{name}/{version}", f"models:/{name}@challenger", f"models:/{model_id}"):
        uri = reg.resolve_uri(ref)
        assert (pathlib.Path(uri) / "weights.txt").read_text(encoding="utf-8") == "logged weights", ref


def test_resolve_uri_passes_storage_uris_through_and_names_bad_references(
    mlflow_server: mlflow_infra.MlflowServer, mlflow_client: MlflowClient, clock: helpers.ManualClock
) -> None:
    name = helpers.unique_model_name()
    helpers.register_remote_versions(mlflow_client, name, 1)
    reg = _registry(mlflow_server, name, clock)

    assert reg.resolve_uri(f"models:/{name}/1") == helpers.storage_source(name, 1)
    assert reg.resolve_uri("gs://bucket/model") == "gs://bucket/model"
    with pytest.raises(ValueError, match=r"models:/<name>/<version>"):
        reg.resolve_uri(f"models:/{name}")
    with pytest.raises(ValueError, match="non-empty"):
        reg.resolve_uri("")
    with pytest.raises(model_registry.RegistryError, match="version 9") as missing_version:
        reg.resolve_uri(f"models:/{name}/9")
    assert missing_version.value.retriable is False
    with pytest.raises(model_registry.RegistryError, match="alias champion") as missing_alias:
        reg.resolve_uri(f"models:/{name}@champion")
    assert missing_alias.value.retriable is False

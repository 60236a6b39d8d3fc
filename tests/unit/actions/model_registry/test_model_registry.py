"""ModelRegistry without a server: an unreachable registry and names it must refuse.

Against a real MLflow server: tests/integration/mlflow/test_registry.py.
"""

from __future__ import annotations

import pytest

from actions import model_registry
from tests.infra import mlflow_server as mlflow_infra
from tests.support.registry import helpers


def test_an_unreachable_registry_is_a_retriable_error(
    clock: helpers.ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's client retries with backoff for minutes by default; one try is enough to prove the mapping.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    closed = f"http://127.0.0.1:{mlflow_infra.free_port()}"
    reg = model_registry.ModelRegistry(closed, "anything", clock=clock)

    with pytest.raises(model_registry.RegistryError) as caught:
        reg.versions()
    assert caught.value.retriable is True
    assert "list versions of model anything" in str(caught.value)


def test_model_names_that_break_the_search_filter_are_refused() -> None:
    with pytest.raises(ValueError, match="registered_model_name"):
        model_registry.ModelRegistry("http://127.0.0.1:1", "it's")

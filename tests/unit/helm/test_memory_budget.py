"""The chart hands the agent its container's memory limit, from which the memory budget follows."""

from __future__ import annotations

import pytest

from agent import settings as settings_mod
from tests.support.helm import chart, samples

LIMIT_ENV = "DRIFT_AGENT_MEMORY__CONTAINER_LIMIT_MIB"


@pytest.mark.parametrize("values", [samples.STANDALONE, samples.SIDECAR], ids=["standalone", "sidecar"])
def test_the_agent_container_reads_its_own_memory_limit_in_mib(values: chart.Doc) -> None:
    docs = chart.render(values)
    agents = [
        chart.container(deployment["spec"]["template"]["spec"], "drift-agent")
        for deployment in chart.find(docs, "Deployment")
        if any(c["name"] == "drift-agent" for c in deployment["spec"]["template"]["spec"]["containers"])
    ]
    assert agents
    for agent in agents:
        (entry,) = [item for item in agent["env"] if item["name"] == LIMIT_ENV]
        assert entry["valueFrom"]["resourceFieldRef"] == {
            "containerName": "drift-agent",
            "resource": "limits.memory",
            "divisor": "1Mi",
        }
        assert agent["resources"]["limits"]["memory"] == "1Gi"


def test_the_default_limit_gives_the_default_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the kubelet puts in the variable for the chart's default limit (1Gi in MiB).
    monkeypatch.setenv(LIMIT_ENV, "1024")
    loaded = settings_mod.load_settings(None)
    assert loaded.memory.budget_bytes == settings_mod.MemorySettings(budget_mib=512).budget_bytes

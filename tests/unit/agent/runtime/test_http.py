"""HealthServer over real HTTP on loopback (urllib as the client)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import prometheus_client
import pytest

from agent.observability import collectors, metrics
from agent.runtime import heartbeat, http


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


class Flags:
    def __init__(self) -> None:
        self.ready = False
        self.alive = True
        self.reason = "joining consumer group 'drift-agent'"


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def server(registry: prometheus_client.CollectorRegistry, flags: Flags) -> Iterator[http.HealthServer]:
    with http.HealthServer(
        "127.0.0.1",
        0,
        registry,
        readiness=lambda: flags.ready,
        liveness=lambda: flags.alive,
        readiness_reason=lambda: flags.reason,
    ) as running:
        yield running


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_metrics_exposes_the_agent_metrics(
    server: http.HealthServer, registry: prometheus_client.CollectorRegistry
) -> None:
    agent_metrics = metrics.AgentMetrics(registry)
    agent_metrics.record_in("predictions", 3)
    agent_metrics.dead_lettered("malformed_json")
    collectors.register_gauge(registry, collectors.CONSUMER_LAG, lambda: [(("predictions", "2"), 41.0)])
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'drift_agent_records_in_total{topic="predictions"} 3.0' in body
    assert 'drift_agent_dlq_total{reason="malformed_json"} 1.0' in body
    assert 'drift_agent_consumer_lag{partition="2",topic="predictions"} 41.0' in body


def test_readyz_follows_readiness_with_its_reason(server: http.HealthServer, flags: Flags) -> None:
    status, _, body = get(server.url + "/readyz")
    assert (status, body) == (503, "joining consumer group 'drift-agent'\n")
    flags.ready = True
    assert get(server.url + "/readyz")[::2] == (200, "ok\n")
    # What is on and off follows "ok" on a ready answer (the agent passes its start-up summary).
    server.detail = ("rollback, retrain and canary: off, no model registry (set registry.tracking_uri)",)
    assert get(server.url + "/readyz")[::2] == (200, "ok\n" + server.detail[0] + "\n")
    assert get(server.url + "/healthz")[::2] == (200, "ok\n")


def test_healthz_follows_liveness(server: http.HealthServer, flags: Flags) -> None:
    assert get(server.url + "/healthz")[0] == 200
    flags.alive = False
    assert get(server.url + "/healthz")[::2] == (503, "not alive\n")


def test_a_probe_that_raises_reports_503_not_500(registry: prometheus_client.CollectorRegistry) -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    with http.HealthServer("127.0.0.1", 0, registry, readiness=broken, liveness=lambda: True) as running:
        status, _, body = get(running.url + "/readyz")
    assert status == 503
    assert "RuntimeError" in body


def test_unknown_path_is_404(server: http.HealthServer) -> None:
    status, _, body = get(server.url + "/admin")
    assert status == 404
    assert "/metrics" in body


def test_stop_closes_the_port(registry: prometheus_client.CollectorRegistry) -> None:
    running = http.HealthServer(
        "127.0.0.1", 0, registry, readiness=lambda: True, liveness=lambda: True
    ).start()
    url = running.url
    assert get(url + "/healthz")[0] == 200
    running.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=2)


def test_binding_a_taken_port_names_the_setting(
    server: http.HealthServer, registry: prometheus_client.CollectorRegistry
) -> None:
    second = http.HealthServer(
        "127.0.0.1", server.port, registry, readiness=lambda: True, liveness=lambda: True
    )
    with pytest.raises(OSError, match=r"http\.port"):
        second.start()


def test_metrics_start_at_zero_for_label_join_and_commits(
    registry: prometheus_client.CollectorRegistry,
) -> None:
    agent_metrics = metrics.AgentMetrics(registry)
    assert registry.get_sample_value("drift_agent_label_join_total", {"outcome": "orphan"}) == 0.0
    agent_metrics.label_joined("orphan", 2)
    assert registry.get_sample_value("drift_agent_label_join_total", {"outcome": "orphan"}) == 2.0
    with pytest.raises(ValueError, match="valid"):
        agent_metrics.label_joined("lost")


def test_window_fill_is_clamped_and_forgotten(registry: prometheus_client.CollectorRegistry) -> None:
    fill: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {
        ("v2", (("app", "web"), ("region", "eu"))): 1700
    }
    collectors.register_gauge(
        registry, collectors.WINDOW_FILL, lambda: metrics.window_fill_samples(fill, 1000)
    )
    labels = {"model_version": "v2", "segment": "app=web,region=eu"}
    assert registry.get_sample_value("drift_agent_window_fill", labels) == 1.0
    fill.clear()  # the window was evicted: its series goes with it, nothing to remove by hand
    assert registry.get_sample_value("drift_agent_window_fill", labels) is None


def test_liveness_fails_with_the_stalled_loop_named_once_a_part_stops_beating(
    registry: prometheus_client.CollectorRegistry,
) -> None:
    now = [0.0]
    beats = heartbeat.Heartbeats(clock=lambda: now[0])
    with http.HealthServer(
        "127.0.0.1",
        0,
        registry,
        readiness=lambda: True,
        liveness=beats.alive,
        liveness_reason=beats.reason,
    ) as running:
        assert get(running.url + "/healthz")[0] == 200  # nothing expected before its first beat
        beats.beat("main loop", 180.0)
        beats.beat("leader election", 180.0)
        now[0] = 170.0
        beats.beat("leader election", 180.0)
        assert get(running.url + "/healthz")[0] == 200
        now[0] = 181.0  # the main loop has not turned for 181 s
        status, _, body = get(running.url + "/healthz")
        assert (status, body.strip()) == (503, "stalled: main loop silent for 181 s")
        beats.stopped("main loop")  # draining on purpose: not a stall
        assert get(running.url + "/healthz")[0] == 200

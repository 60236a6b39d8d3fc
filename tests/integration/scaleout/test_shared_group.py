"""The chart's topology: several agents in one consumer group share the work through Kafka.

Each test starts ``drift-agent run`` processes against the embedded broker; they ingest a share of
the input partitions, meet per model at one evaluator, and the one consumer of the actions topic
executes. What they decided is read from their audit files, what they did from the shared
journal topic and from the alert receiver (the stand-in for Slack's endpoint).
"""

from __future__ import annotations

import contextlib
import http.server
import math
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from demo import broker, receiver
from tests.integration.scaleout import cluster as cluster_mod

pytestmark = pytest.mark.integration

PARTITIONS = 4
RECORDS = 12_000
DRIFT_FROM = 7_000
WINDOW = 500
REFERENCE = 2_000
PAGING = ("moderate", "severe", "critical")
WINDOW_S = WINDOW * 0.01  # the same span of event time (produce_stream spaces records 10 ms apart)
RATE = 1_500.0  # records per second, as a serving fleet sends them
# The chart's terminationGracePeriodSeconds: runtime.drain_timeout_s (20 in the cluster) + 5.
GRACE_S = 25.0


@pytest.fixture
def alerts() -> Iterator[receiver.AlertReceiver]:
    running = receiver.AlertReceiver().start()
    yield running
    running.stop()


def shared_group(
    tmp: pathlib.Path,
    kafka_broker: broker.EmbeddedBroker,
    sink_url: str,
    *,
    agents: int,
    started: int | None = None,
    configure: Callable[[dict[str, Any]], None] | None = None,
) -> contextlib.AbstractContextManager[tuple[cluster_mod.Cluster, str]]:
    """``running_cluster`` in this module's topology (partitions, windows, reference)."""
    return cluster_mod.running_cluster(
        tmp, kafka_broker, sink_url, agents=agents, partitions=PARTITIONS, window=WINDOW,
        reference=REFERENCE, started=started, configure=configure,
    )  # fmt: skip


@contextlib.contextmanager
def run(
    tmp: pathlib.Path,
    kafka_broker: broker.EmbeddedBroker,
    alerts: receiver.AlertReceiver,
    *,
    agents: int,
    seed: int = 5,
) -> Iterator[cluster_mod.Cluster]:
    """``agents`` agents judging the drifting stream to its end (stopped on exit)."""

    def time_windows(settings: dict[str, Any]) -> None:
        # Event-time windows of WINDOW records' worth of time: comparable across runs
        # (see first_paging_window).
        settings["window"] = {"kind": "time", "duration_s": WINDOW_S}

    with shared_group(tmp, kafka_broker, alerts.url, agents=agents, configure=time_windows) as (
        agents_cluster,
        stem,
    ):
        bootstrap, predictions = kafka_broker.bootstrap_servers, f"{stem}.predictions"

        def produce(start: int, count: int, seed: int) -> None:
            cluster_mod.produce_stream(
                bootstrap, predictions, f"{stem}.labels", count=count, start=start, drift_from=DRIFT_FROM,
                seed=seed, rate=RATE,
            )  # fmt: skip

        # The reference first, and taken in before the rest: an agent that fell behind would otherwise
        # read one input partition's records far into the stream before another's, and its first
        # REFERENCE records would reach into the drift.
        produce(0, REFERENCE, seed)
        cluster_mod.wait_for(
            lambda: cluster_mod.committed_total(bootstrap, stem, predictions, PARTITIONS) >= REFERENCE,
            what="the reference records ingested",
            logs=agents_cluster.logs,
        )
        produce(REFERENCE, RECORDS - REFERENCE, seed + 1)
        # The time window holding the last records closes on the clock, its grace after the stream.
        last = cluster_mod.EPOCH + (RECORDS - 1) * cluster_mod.EVENT_SPACING_S - WINDOW_S
        cluster_mod.wait_for(
            lambda: any(
                d["window"]["last_event_time"] >= last for d in agents_cluster.decisions() if d.get("window")
            ),
            what="the windows up to the end of the stream judged",
            logs=agents_cluster.logs,
        )
        yield agents_cluster


def first_paging_window(agents_cluster: cluster_mod.Cluster) -> float:
    """End (event time, in records of the stream) of the first time window decided moderate or worse.

    Time windows: a window is an interval of event time, whatever order its records arrived in
    across partitions and agents, so runs with different numbers of agents can be compared
    window by window.
    """
    ends = [
        math.ceil((float(d["window"]["last_event_time"]) - cluster_mod.EPOCH) / WINDOW_S) * WINDOW_S
        for d in agents_cluster.decisions()
        if d.get("window")
        and not d["window"]["labelled"]
        and d["severity"] in ("moderate", "severe", "critical")
    ]
    assert ends, "nothing paged"
    return min(ends) / cluster_mod.EVENT_SPACING_S


def alert_keys(journal: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(key for key, record in journal.items() if record["request"]["kind"] == "alert")


def test_three_agents_judge_and_act_as_one(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, alerts: receiver.AlertReceiver
) -> None:
    with run(tmp_path, kafka_broker, alerts, agents=1) as one:
        one_page, one_journal = first_paging_window(one), one.journal()
    delivered_by_one = len(alerts.snapshot())
    with run(tmp_path, kafka_broker, alerts, agents=3) as three:
        three_page, three_journal = first_paging_window(three), three.journal()
        # Every agent ingested a share: the work was spread, not done by one.
        assert (
            sum(1 for agent in three.agents if any(e.get("kind") == "decision" for e in agent.audit())) >= 1
        )
    delivered_by_three = len(alerts.snapshot()) - delivered_by_one
    # The same windows alarm, one window either way: no page before the drift, and three agents
    # page within a window of where one agent pages (the default policy waits for three drifted
    # windows in a row, so a page comes three or four windows into the drift).
    print(f"first paging window ends at record {one_page:.0f} (one agent), {three_page:.0f} (three agents)")
    assert DRIFT_FROM < one_page <= DRIFT_FROM + 5 * WINDOW, one_page
    assert abs(three_page - one_page) <= WINDOW, (one_page, three_page)
    # The same actions, each run once: every journaled alert began once and succeeded.
    assert [k.split("#")[0] for k in alert_keys(three_journal)] == [
        k.split("#")[0] for k in alert_keys(one_journal)
    ]
    for journal in (one_journal, three_journal):
        assert alert_keys(journal), "the drift raised no alert"
        for key in alert_keys(journal):
            assert journal[key]["attempts"] == 1 and journal[key]["outcome"]["status"] == "succeeded", key
    # ... and delivered once: as many Slack posts as journaled alerts.
    assert delivered_by_one == len(alert_keys(one_journal))
    assert delivered_by_three == len(alert_keys(three_journal))


def test_drift_confined_to_one_input_partition_is_alerted(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, alerts: receiver.AlertReceiver
) -> None:
    """A producer keyed by pod (or version) can put one shift in one partition: it still pages."""
    with shared_group(tmp_path, kafka_broker, alerts.url, agents=3) as (agents, stem):
        # Records go round-robin over the partitions; only partition 2's drift (every 4th record).
        cluster_mod.produce_stream(
            kafka_broker.bootstrap_servers,
            f"{stem}.predictions",
            f"{stem}.labels",
            count=RECORDS,
            drift_from=DRIFT_FROM,
            seed=9,
            partition_of=lambda i: i % PARTITIONS,
            drifting_partition=2,
            rate=RATE,
        )
        cluster_mod.wait_for(
            lambda: any(
                r["request"]["kind"] == "alert" and r.get("outcome") for r in agents.journal().values()
            ),
            what="an alert for the drift in partition 2",
            logs=agents.logs,
        )
    assert any("data_drift" in (r.body.get("text") or "") for r in alerts.snapshot()), [
        r.headline() for r in alerts.snapshot()
    ]


@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_agents_joining_and_leaving_never_count_a_record_twice(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker, alerts: receiver.AlertReceiver, client: str
) -> None:
    # Both clients (``kafka.client``): each has its own consumer and, on librdkafka, its own
    # fragment producer; a rebalance, a drain and a rejoin must lose and repeat nothing on either.
    def use_client(settings: dict[str, Any]) -> None:
        settings["kafka"]["client"] = client

    with shared_group(tmp_path, kafka_broker, alerts.url, agents=3, started=2, configure=use_client) as (
        agents,
        stem,
    ):
        first, _, joiner = agents.agents
        third = RECORDS // 3
        produce = {"count": third, "drift_from": None, "seed": 11, "rate": RATE}
        bootstrap, predictions, labels = (
            kafka_broker.bootstrap_servers,
            f"{stem}.predictions",
            f"{stem}.labels",
        )
        cluster_mod.produce_stream(bootstrap, predictions, labels, **produce)  # type: ignore[arg-type]
        joiner.start()  # a pod scaled up mid-stream: the group rebalances
        # The embedded broker never settles a group that a member leaves while a join is still
        # under way (SyncGroup fails round after round): scale down once the scale-up settled.
        agents.wait_ready()
        cluster_mod.produce_stream(bootstrap, predictions, labels, start=third, **produce)  # type: ignore[arg-type]
        first.terminate(30)  # a pod scaled down mid-stream
        cluster_mod.produce_stream(bootstrap, predictions, labels, start=2 * third, **produce)  # type: ignore[arg-type]

        def counted() -> int:
            state = cluster_mod.stored_states(bootstrap, agents.settings).get("churn")
            return int(state.predictions) if state is not None else 0

        seen: list[int] = []

        def all_counted() -> bool:
            seen.append(counted())
            return seen[-1] >= RECORDS

        cluster_mod.wait_for(
            all_counted,
            what="every record counted (counts seen: see the assertion)",
            logs=lambda: f"counted so far: {seen[-5:]}\n{agents.logs()}",
        )
        time.sleep(3.0)  # a late duplicate would show up in the next stored state
        total = counted()
    assert total == RECORDS, f"{total} predictions counted for {RECORDS} produced"
    windows = agents.windows()
    assert windows == {
        ("churn", "3", REFERENCE + WINDOW * k) for k in range(1, (RECORDS - REFERENCE) // WINDOW + 1)
    }


class SlowReceiver:
    """Slack's stand-in, answering each post after ``delay_s``: an action stays in hand that long."""

    def __init__(self, delay_s: float) -> None:
        self.bodies: list[bytes] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay_s)
                owner.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_sigterm_drains_within_the_grace_period_without_losing_a_queued_action(
    tmp_path: pathlib.Path, kafka_broker: broker.EmbeddedBroker
) -> None:
    slow = SlowReceiver(delay_s=3.0)
    try:
        with shared_group(tmp_path, kafka_broker, slow.url, agents=2) as (agents, stem):
            drained_in, decided, journal = drain_while_an_alert_is_in_hand(agents, stem, kafka_broker)
    finally:
        slow.close()
    # The chart's grace period is runtime.drain_timeout_s plus a margin: the drain fits in it.
    assert drained_in < GRACE_S, drained_in
    # Every notification decided: alerts, and the resolve of an incident that cleared and re-opened
    # while the group rebalanced (the drain moves the model). Slack (which this receiver stands in
    # for) gets each once; a resolve also goes to PagerDuty, on the same receiver here.
    notified = [key for key in decided if journal[key]["request"]["kind"] in ("alert", "page", "resolve")]
    assert any(journal[key]["request"]["kind"] == "alert" for key in notified)
    assert all(journal[key]["outcome"]["status"] == "succeeded" for key in notified)
    slack = [body for body in slow.bodies if b'"event_action"' not in body]
    assert len(slack) == len(notified), "a notification was lost or sent twice across the drain"


def drain_while_an_alert_is_in_hand(
    agents: cluster_mod.Cluster, stem: str, kafka_broker: broker.EmbeddedBroker
) -> tuple[float, set[str], dict[str, dict[str, Any]]]:
    """SIGTERM to the executor while an alert it began is unanswered: how long the drain took,
    the keys of every decided action, and the journal once they are all done."""
    cluster_mod.produce_stream(
        kafka_broker.bootstrap_servers, f"{stem}.predictions", f"{stem}.labels",
        count=RECORDS, drift_from=DRIFT_FROM, seed=13, rate=RATE,
    )  # fmt: skip

    def alert_in_hand() -> bool:
        return any(
            r["request"]["kind"] == "alert" and not r.get("outcome") for r in agents.journal().values()
        )

    cluster_mod.wait_for(alert_in_hand, what="an alert begun and not yet answered", logs=agents.logs)
    executor = next(a for a in agents.agents if ".actions[0]" in "".join(a.log_tail(400).splitlines()))
    drained_in = executor.terminate(GRACE_S)
    decided = {a["idempotency_key"] for d in agents.decisions() for a in d["actions"]}
    cluster_mod.wait_for(
        lambda: decided <= {k for k, r in agents.journal().items() if r.get("outcome")},
        what="every decided action journaled as done",
        logs=agents.logs,
    )
    return drained_in, decided, agents.journal()

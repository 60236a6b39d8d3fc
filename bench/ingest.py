"""Ingest benchmark: a bare kafka-python consume loop vs the agent's ingest path.

Both read the same N prediction-log records (20 numeric features, ~670 bytes of JSON) from an
embedded Tansu broker on loopback. The agent path is the ingest stage every agent runs on its
share of the input partitions (``runtime.ingest_stage.IngestStage``): ``KafkaSource.poll_batch``,
parse and validate each message, buffer it per model, and every ``streams.commit_interval_s``
publish the fragments (acks=all), wait for them, then commit the input offsets (once more at the
end, inside the timing). Throughput is counted from the first record received (group joins and
fetch warm-up excluded, for both).

The machine is shared: bare and agent runs alternate (bare, agent, bare, agent, ...) so that a
change of load hits both, each side reports its median, and the load average is printed. CPU
time per message (this process, all threads) is printed beside wall time: it moves much less
with other processes' load. Memory (VmRSS / VmHWM) is sampled at 25, 50, 75 and 100 % of the
first agent run: windows are bounded, so it must stay flat.

    python -m bench ingest                # N = 200 000
    BENCH_INGEST_N=50000 python -m bench ingest
    python -m bench.ingest --n 50000 --repeats 3 --profile

The same comparison on 200-feature records (~4.5 kB of JSON each), with records/s per core through
ingest and windowing, is ``bench.ingest_wide`` (next in ``make bench``).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import operator
import os
import pathlib
import pstats
import random
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import Iterator

import kafka
import prometheus_client

from agent import settings
from agent.ingest import connection, consumers, fragments, parsing, producers, records, source, worker
from agent.observability import metrics
from agent.pipeline import reference, windows
from agent.runtime import ingest_stage, process
from demo import broker

DEFAULT_N = 200_000
GOAL_RATIO = 0.75
FEATURES = 20
WINDOW_SIZE = 1000
PROGRESS_POINTS = (0.25, 0.5, 0.75, 1.0)
PARSE_SAMPLE = 2000
# The sidecar commits after each checkpoint, by default every 5 s, not after every batch.
CHECKPOINT_INTERVAL_S = 5.0

_partition_of = operator.itemgetter(0, 1)  # RawMessage -> (topic, partition)
# A pass that receives nothing for this long gives up (a missing topic must not hang `make bench`).
STALL_S = 60.0


class Progress:
    """Fails a pass that stops receiving records, instead of waiting forever."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.last_progress = time.monotonic()

    def add(self, count: int) -> None:
        self.seen += count
        self.last_progress = time.monotonic()

    def idle(self) -> None:
        if time.monotonic() - self.last_progress > STALL_S:
            raise RuntimeError(f"received {self.seen} of {self.n} records, then nothing for {STALL_S:.0f}s")


def make_record(index: int, rng: random.Random, features: int = FEATURES) -> bytes:
    record = {
        "request_id": f"req-{index:09d}",
        "timestamp": 1_700_000_000 + index * 0.01,
        "model_name": "fraud",
        "model_version": "v3",
        "features": {f"feat_{i:03d}": round(rng.gauss(0.0, 1.0), 5) for i in range(features)},
        "prediction": round(rng.random(), 6),
        "confidence": round(rng.random(), 4),
        "latency_ms": round(rng.uniform(5, 50), 3),
        "gpu_latency_ms": round(rng.uniform(1, 10), 3),
        "status": "ok",
        "segment": {"region": "eu-west-1"},
    }
    return json.dumps(record).encode()


def iter_records(n: int, features: int = FEATURES) -> Iterator[bytes]:
    """The benchmark's stream: the same n records of ``features`` features on every call (seeded)."""
    rng = random.Random(7)
    return (make_record(index, rng, features) for index in range(n))


def produce(bootstrap: str, topic: str, n: int, features: int = FEATURES) -> float:
    """Produce the stream's n records; returns their mean size in bytes."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024, compression_type=None
    )
    total = 0
    for value in iter_records(n, features):
        total += len(value)
        producer.send(topic, value=value)
    producer.flush(timeout=300)
    producer.close()
    return total / n


def bench_schema(features: int = FEATURES) -> reference.FeatureSchema:
    """The schema the agent would fix from its reference data (built before any timing)."""
    parser = parsing.RecordParser()
    sample = [parser.parse_prediction(value) for value in iter_records(100, features)]
    return reference.FeatureSchema.infer(r for r in sample if isinstance(r, records.PredictionRecord))


def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB, from /proc (Linux)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in found:
            found[name] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


@dataclasses.dataclass(frozen=True)
class Run:
    """One pass over the topic: wall-clock rate and CPU cost, both from the first record."""

    msg_per_s: float
    cpu_us_per_msg: float


class Timer:
    """Starts at the first record: group joins and fetch warm-up are not ingest.

    Except for a client that fetches on its own threads (librdkafka): by the time it hands over
    its first records it may have fetched the whole topic, so its passes start the CPU clock when
    the consumer is created (``start_cpu_now``), its group join included: an upper bound.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._cpu_started = False

    def start_cpu_now(self) -> None:
        self.cpu = time.process_time()
        self._cpu_started = True

    def start_once(self) -> None:
        if not self.wall:
            self.wall = time.perf_counter()
            if not self._cpu_started:
                self.cpu = time.process_time()

    def run(self, n: int) -> Run:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return Run(n / wall, cpu / n * 1e6)


def bare_consume(bootstrap: str, topic: str, n: int, consumer_options: dict[str, int]) -> Run:
    """A plain KafkaConsumer poll loop that only counts records."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=2000,
        session_timeout_ms=2000,
        heartbeat_interval_ms=600,
        **consumer_options,
    )
    consumer.subscribe([topic])
    progress = Progress(n)
    timer = Timer()
    try:
        while progress.seen < n:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                progress.idle()
            for batch in polled.values():
                timer.start_once()
                progress.add(len(batch))
        return timer.run(n)
    finally:
        consumer.close(autocommit=False)


class AgentIngest:
    """The agent's ingest stage (``runtime.ingest_stage.IngestStage``) over the same topic.

    What every agent does with its share of the input partitions: parse and validate each
    record, buffer it per model, and every ``streams.commit_interval_s`` publish the buffered
    records as window fragments (acks=all), wait for the acknowledgements, then commit the input
    offsets. Windows and detectors are the evaluate stage's, on the fragments' owner.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        max_poll_records: int,
        fragments_topic: str,
        client: str = "kafka-python",
    ) -> None:
        self.kafka_settings = settings.KafkaSettings(
            client=client,
            bootstrap_servers=bootstrap,
            predictions_topic=topic,
            group_id=f"bench-agent-{uuid.uuid4().hex[:8]}",
            max_poll_records=max_poll_records,
            max_poll_interval_ms=2000,
            session_timeout_ms=2000,
        )
        self.streams = settings.StreamsSettings()
        self.metrics = metrics.AgentMetrics(prometheus_client.CollectorRegistry())
        self.fragments_topic = fragments_topic
        self.bootstrap = bootstrap
        self.rejected = 0
        self.accepted = 0
        self.fragments_sent = 0

    def run(self, n: int, memory_samples: list[tuple[int, int, int]] | None = None) -> Run:
        producer = kafka.KafkaProducer(
            **connection.connection_config(self.kafka_settings),
            acks="all",
            linger_ms=5,
            max_request_size=16 * 2**20,
        )
        fragment_producer = producers.fragment_producer(self.kafka_settings, producer)
        stage = ingest_stage.IngestStage(
            kafka_settings=self.kafka_settings,
            streams=self.streams,
            fragments_topic=self.fragments_topic,
            fragment_partitions=1,
            ingest=worker.IngestWorker(
                parser=parsing.RecordParser(),
                labels_topic=None,
                join=None,
                producer="bench",
                max_fragment_records=self.streams.max_fragment_records,
            ),
            # As the sidecar does (agent.app): librdkafka's own producer for fragments.
            producer=fragment_producer,
            metrics=self.metrics,
        )
        timer = Timer()
        if self.kafka_settings.client == "librdkafka":
            timer.start_cpu_now()
        kafka_source = consumers.open_source(self.kafka_settings, metrics=self.metrics)
        marks = [int(n * point) for point in PROGRESS_POINTS]
        progress = Progress(n)
        try:
            while progress.seen < n:
                batch = kafka_source.poll_batch()
                if not batch:
                    progress.idle()
                    continue
                timer.start_once()
                for message in batch:
                    stage.handle(message)
                progress.add(len(batch))
                if (progress.seen >= n or stage.due()) and not stage.make_durable(kafka_source):
                    raise RuntimeError(
                        "the ingest stage could not make its work durable: the broker is unwell"
                    )
                while marks and progress.seen >= marks[0] and memory_samples is not None:
                    memory_samples.append((marks.pop(0), *memory_kib()))
            return timer.run(n)
        finally:
            self.fragments_sent = stage.fragments_sent
            self.rejected = stage.worker_counts.rejected
            self.accepted = stage.worker_counts.predictions
            kafka_source.close()
            stage.dlq.close(timeout_s=5)
            producers.close_fragment_producer(fragment_producer, timeout=5)
            producer.close(timeout=5)


def parse_us_per_record(values: list[bytes]) -> float:
    """``parse_prediction`` alone (no Kafka): CPU time, best of 5 repeats, in microseconds."""
    parse = parsing.RecordParser().parse_prediction

    def parse_all() -> None:
        for value in values:
            parse(value)

    best = min(timeit.repeat(parse_all, number=3, repeat=5, timer=time.process_time))
    return best / (3 * len(values)) * 1e6


def window_us_per_record(values: list[bytes], schema: reference.FeatureSchema) -> float:
    """``WindowManager.add`` alone, closing windows included: CPU time, best of 5, in microseconds.

    The records are those the evaluate stage gets: decoded from a fragment (features as rows)."""
    good = [entry.record for entry in fragments.decode(fragments.encode(as_fragment(values))).entries]

    def add_all() -> None:
        add = windows.WindowManager(settings.WindowSettings(size=WINDOW_SIZE), schema).add
        for index, record in enumerate(good):
            add(record, index)

    return min(timeit.repeat(add_all, number=1, repeat=5, timer=time.process_time)) / len(good) * 1e6


def as_fragment(values: list[bytes]) -> fragments.Fragment:
    """The records that parse, as one fragment of the ingest stage."""
    parser = parsing.RecordParser()
    entries = [
        fragments.Entry(record, index, fragments.PREDICTIONS, 0, index)
        for index, record in enumerate(map(parser.parse_prediction, values))
        if isinstance(record, records.PredictionRecord)
    ]
    return fragments.Fragment(fragments.FORMAT, "bench", entries, {0: 0.0}, "bench")


def profile_agent(bootstrap: str, topic: str, n: int, max_poll_records: int) -> str:
    ingest = AgentIngest(bootstrap, topic, max_poll_records, f"{topic}.fragments")
    profiler = cProfile.Profile()
    profiler.enable()
    ingest.run(n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue()


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


@dataclasses.dataclass
class Comparison:
    bare: list[Run]
    agent: list[Run]
    fragments_sent: int
    rejected: int
    accepted: int  # predictions parsed and handed to a fragment
    memory: list[tuple[int, int, int]]
    agent_groups: list[str]  # consumer groups of the agent passes (their commits can be checked)

    @property
    def ratio(self) -> float:
        """Median agent msg/s over median bare msg/s: the number the goal is about."""
        return median(self.agent, "msg_per_s") / median(self.bare, "msg_per_s")

    @property
    def cpu_ratio(self) -> float:
        """The same ratio from CPU cost per message (less sensitive to other processes)."""
        return median(self.bare, "cpu_us_per_msg") / median(self.agent, "cpu_us_per_msg")


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(run, field) for run in runs))


def agent_consumer_options() -> dict[str, int]:
    """The agent's consumer settings, for the bare loop too."""
    return {
        "max_poll_records": settings.KafkaSettings().max_poll_records,
        "fetch_max_bytes": source.FETCH_MAX_BYTES,
        "max_partition_fetch_bytes": source.MAX_PARTITION_FETCH_BYTES,
    }


def compare(bootstrap: str, topic: str, n: int, repeats: int, client: str = "kafka-python") -> Comparison:
    """Alternate ``repeats`` bare and agent passes over the first ``n`` records of ``topic``
    (the agent reading with ``client``, ``kafka.client``)."""
    max_poll_records = settings.KafkaSettings().max_poll_records
    consumer_options = agent_consumer_options()
    result = Comparison([], [], 0, 0, 0, [], [])
    for attempt in range(repeats):
        result.bare.append(bare_consume(bootstrap, topic, n, consumer_options))
        ingest = AgentIngest(bootstrap, topic, max_poll_records, f"{topic}.fragments", client)
        result.agent_groups.append(ingest.kafka_settings.group_id)
        result.agent.append(ingest.run(n, result.memory if attempt == 0 else None))
        if attempt == 0:
            result.fragments_sent, result.rejected = ingest.fragments_sent, ingest.rejected
            result.accepted = ingest.accepted
    return result


def report(result: Comparison, client: str = "kafka-python") -> None:
    print(f"{'path':<34}{'median msg/s':>14}{'CPU us/msg':>12}   runs (msg/s)")
    agent = "agent ingest path" if client == "kafka-python" else f"agent ingest path ({client})"
    for name, runs in (("bare kafka-python poll loop", result.bare), (agent, result.agent)):
        each = ", ".join(f"{run.msg_per_s:,.0f}" for run in runs)
        rate, cpu = median(runs, "msg_per_s"), median(runs, "cpu_us_per_msg")
        print(f"{name:<34}{rate:>14,.0f}{cpu:>12.1f}   {each}")
    verdict = "meets" if result.ratio >= GOAL_RATIO else "BELOW"
    print(f"{'ratio agent / bare (wall)':<34}{result.ratio:>14.2f}   ({verdict} the goal of {GOAL_RATIO})")
    print(f"{'ratio agent / bare (CPU)':<34}{result.cpu_ratio:>14.2f}")
    print(f"fragments published per run: {result.fragments_sent}, rejected: {result.rejected}")
    print()
    print("memory during the first agent run (buffers are bounded: RSS must stay flat)")
    print(f"{'progress':>9}{'records':>10}{'VmRSS MiB':>12}{'VmHWM MiB':>12}")
    for point, (seen, rss, hwm) in zip(PROGRESS_POINTS, result.memory, strict=False):
        print(f"{point:>9.0%}{seen:>10}{rss / 1024:>12.1f}{hwm / 1024:>12.1f}")


SCALE_GOAL = 1.6
SCALE_PARTITIONS = 2


def scale_worker(bootstrap: str, topic: str, group: str, n: int) -> None:
    """One agent's ingest stage in its own process, in ``group``: prints its share as JSON."""
    kafka_settings = settings.KafkaSettings(
        bootstrap_servers=bootstrap,
        predictions_topic=topic,
        group_id=group,
        max_poll_interval_ms=4000,
        session_timeout_ms=4000,
    )
    streams = settings.StreamsSettings()
    agent_metrics = metrics.AgentMetrics(prometheus_client.CollectorRegistry())
    producer = kafka.KafkaProducer(**connection.connection_config(kafka_settings), acks="all", linger_ms=5)
    stage = ingest_stage.IngestStage(
        kafka_settings=kafka_settings,
        streams=streams,
        fragments_topic=f"{topic}.fragments",
        fragment_partitions=1,
        ingest=worker.IngestWorker(
            parser=parsing.RecordParser(), labels_topic=None, join=None, producer=group,
            max_fragment_records=streams.max_fragment_records,
        ),
        producer=producer,
        metrics=agent_metrics,
    )  # fmt: skip
    consumer = source.KafkaSource(kafka_settings, metrics=agent_metrics)
    process.tune_gc()
    first = last = 0.0
    seen = 0
    quiet_since = time.monotonic()
    # Runs until the whole topic is read by the group (this worker stops once it has been idle
    # for a while after reading something: the others have the rest).
    while time.monotonic() - quiet_since < (3.0 if seen else 60.0):
        batch = consumer.poll_batch()
        if not batch:
            continue
        quiet_since = time.monotonic()
        first = first or time.time()
        for message in batch:
            stage.handle(message)
        seen += len(batch)
        if stage.due():
            stage.make_durable(consumer)
        last = time.time()
    stage.make_durable(consumer)
    last = time.time() if seen else last
    consumer.close()
    producer.close(timeout=5)
    print(json.dumps({"first": first, "last": last, "seen": seen}))


def scale(bootstrap: str, topic: str, n: int, processes: int) -> float:
    """Records per second through the ingest stage of ``processes`` agent processes in one group."""
    group = f"bench-scale-{uuid.uuid4().hex[:8]}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.ingest", "--scale-worker", bootstrap, topic, group, str(n)],
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    reports = [json.loads(w.communicate(timeout=600)[0].decode().strip().splitlines()[-1]) for w in workers]
    if sum(r["seen"] for r in reports) < n:
        raise RuntimeError(f"the workers read {sum(r['seen'] for r in reports)} of {n} records")
    started = min(r["first"] for r in reports if r["seen"])
    finished = max(r["last"] for r in reports if r["seen"])
    return float(n / (finished - started))


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_INGEST_N", DEFAULT_N)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the agent path")
    parser.add_argument(
        "--scale-worker", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "GROUP", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args([] if argv is None else argv)
    if args.scale_worker:
        bootstrap, topic, group, count = args.scale_worker
        scale_worker(bootstrap, topic, group, int(count))
        return
    n, repeats = args.n, args.repeats
    print(f"ingest benchmark: {n} records, {FEATURES} features, 1 partition")
    print(f"load average at start: {_load()}")
    sample = list(iter_records(PARSE_SAMPLE))
    print(
        f"without Kafka (CPU, best of 5): parse_prediction {parse_us_per_record(sample):.2f} us/record, "
        f"WindowManager.add {window_us_per_record(sample, bench_schema()):.2f} us/record"
    )

    # The agent runs with these GC settings (agent.app.run); both paths share the process.
    process.tune_gc()
    with broker.EmbeddedBroker() as embedded:
        bootstrap = embedded.bootstrap_servers
        topic = "bench-ingest"
        embedded.create_topics([topic, f"{topic}.fragments"], partitions=1)
        started = time.perf_counter()
        mean_size = produce(bootstrap, topic, n)
        produce_s = time.perf_counter() - started
        print(
            f"produced {mean_size:.0f}-byte records (mean) in {produce_s:.1f}s ({n / produce_s:,.0f} msg/s)"
        )
        print(
            f"consumer: max_poll_records={settings.KafkaSettings().max_poll_records}, "
            f"fetch_max_bytes={source.FETCH_MAX_BYTES}, "
            f"max_partition_fetch_bytes={source.MAX_PARTITION_FETCH_BYTES}"
        )
        print()
        result = compare(bootstrap, topic, n, repeats)
        report(result)
        print(f"load average at end: {_load()}")
        if result.ratio < GOAL_RATIO or args.profile:
            print()
            print("cProfile of one agent run (top 15 by own time):")
            print(profile_agent(bootstrap, topic, n, settings.KafkaSettings().max_poll_records))
        print()
        scaled_topic = "bench-ingest-scale"
        embedded.create_topics([scaled_topic, f"{scaled_topic}.fragments"], partitions=SCALE_PARTITIONS)
        produce(bootstrap, scaled_topic, n)
        rates = {
            count: statistics.median(scale(bootstrap, scaled_topic, n, count) for _ in range(repeats))
            for count in (1, 2)
        }
        factor = rates[2] / rates[1]
        verdict = "meets" if factor >= SCALE_GOAL else "BELOW"
        print(
            f"scale-out: {SCALE_PARTITIONS} input partitions, agent processes in one group "
            f"({os.cpu_count()} CPUs, the broker's included)"
        )
        for count, rate in rates.items():
            print(f"  {count} agent process(es): {rate:,.0f} msg/s (median of {repeats})")
        print(f"  two over one: {factor:.2f}x   ({verdict} the goal of {SCALE_GOAL}x)")


if __name__ == "__main__":
    run(sys.argv[1:])

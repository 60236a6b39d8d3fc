"""Wide records: 200-feature records through ingest and windowing, per core.

    python -m bench.ingest_wide --n 50000     # part of `make bench` (BENCH_INGEST_WIDE_N)

The same bare and agent passes as ``bench.ingest``, once with each ``kafka.client``, then what
the evaluate stage adds per record (fetching, decoding and windowing the fragments) and the cost
per core against the goal of ``WIDE_GOAL_PER_CORE``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
import uuid

import confluent_kafka
import kafka

from agent import settings
from agent.ingest import fragments, producers, source
from agent.runtime import process
from bench import ingest
from demo import broker


def bare_consume_librdkafka(bootstrap: str, topic: str, n: int) -> ingest.Run:
    """The same loop on librdkafka (confluent-kafka): what reading costs the evaluate stage with
    ``kafka.client: librdkafka``."""
    timer = ingest.Timer()
    timer.start_cpu_now()
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-bare-rd-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.poll.interval.ms": 10000,
            "session.timeout.ms": 6000,
            "fetch.max.bytes": source.FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": source.MAX_PARTITION_FETCH_BYTES,
        }
    )
    consumer.subscribe([topic])
    progress = ingest.Progress(n)
    try:
        while progress.seen < n:
            polled = consumer.consume(num_messages=settings.KafkaSettings().max_poll_records, timeout=0.5)
            if not polled:
                progress.idle()
                continue
            timer.start_once()
            progress.add(sum(1 for message in polled if message.error() is None))
        return timer.run(n)
    finally:
        consumer.close()


def fragment_decode_us_per_record(values: list[bytes]) -> float:
    """``fragments.decode`` of the records as one fragment (what the evaluate stage does with each
    fragment it reads): CPU time, best of 5, in microseconds per record."""
    fragment = ingest.as_fragment(values)
    raw = fragments.encode(fragment)
    best = min(timeit.repeat(lambda: fragments.decode(raw), number=3, repeat=5, timer=time.process_time))
    return best / (3 * len(fragment.entries)) * 1e6


def handoff_us_per_record(
    bootstrap: str, topic: str, values: list[bytes], n: int
) -> tuple[float, dict[str, float]]:
    """What handing records to the evaluator through Kafka costs, whatever the stages do besides:
    (``fragments.encode_bounded`` of the records in fragments of ``streams.max_fragment_records``,
    CPU best of 5; {client: producing those messages to ``topic`` as the ingest stage does with
    that client's fragment producer, acks=all, CPU of all threads}) per record, the messages sent
    over and over until ``n`` records have gone."""
    entries = ingest.as_fragment(values).entries
    size = settings.StreamsSettings().max_fragment_records
    batches = [
        fragments.Fragment(fragments.FORMAT, "bench", entries[start : start + size], {0: 0.0}, "bench")
        for start in range(0, len(entries), size)
    ]

    def encode_all() -> list[bytes]:
        return [message for batch in batches for message in fragments.encode_bounded(batch)]

    encode_s = min(timeit.repeat(encode_all, number=1, repeat=5, timer=time.process_time))
    messages = encode_all()
    rounds = max(1, n // len(entries))
    produce_us = {}
    for client in ("kafka-python", "librdkafka"):
        kafka_settings = settings.KafkaSettings(client=client, bootstrap_servers=bootstrap)
        shared = kafka.KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 * 2**20
        )
        producer = producers.fragment_producer(kafka_settings, shared)
        try:
            producer.send(topic, key=b"bench", value=messages[0], partition=0)
            producer.flush(timeout=60)  # connected, the producer id taken: not per record
            started = time.process_time()
            for _ in range(rounds):
                for message in messages:
                    producer.send(topic, key=b"bench", value=message, partition=0)
                producer.flush(timeout=300)
            produce_us[client] = (time.process_time() - started) / (rounds * len(entries)) * 1e6
        finally:
            producers.close_fragment_producer(producer, timeout=5)
            shared.close(timeout=5)
    return encode_s / len(entries) * 1e6, produce_us


WIDE_FEATURES = 200
WIDE_N = 50_000
WIDE_GOAL_PER_CORE = 20_000


def _per_core(
    client: str,
    agent_cpu: float,
    fetch_us: float,
    decode_us: float,
    window_us: float,
    result: ingest.Comparison,
) -> float:
    per_core = 1e6 / (agent_cpu + fetch_us + decode_us + window_us)
    bare_per_core = 1e6 / ingest.median(result.bare, "cpu_us_per_msg")
    verdict = "meets" if per_core >= WIDE_GOAL_PER_CORE else "BELOW"
    print(
        f"ingest + windowing per core ({client}): {per_core:,.0f} records/s ({agent_cpu:.1f} + "
        f"{fetch_us:.1f} + {decode_us:.1f} + {window_us:.1f} us CPU per record; bare kafka-python loop "
        f"{bare_per_core:,.0f}/s per core, ratio {per_core / bare_per_core:.2f})   ({verdict} the goal of "
        f"{WIDE_GOAL_PER_CORE:,}/s)"
    )
    return per_core


def wide(embedded: broker.EmbeddedBroker, n: int, repeats: int, features: int) -> None:
    """Wide records through ingest and windowing: the same comparison, then the cost per core.

    Per core = one second of CPU over (the agent path's CPU per message, all its threads: consumer,
    parse, fragments, producer) plus the evaluate stage's per record on the fragments' owner:
    reading the fragments from Kafka (a bare poll loop over the first pass's fragments),
    ``fragments.decode`` and ``WindowManager.add``. Detectors are per window, not per record:
    excluded.
    """
    bootstrap = embedded.bootstrap_servers
    topic = f"bench-ingest-wide-{features}"
    embedded.create_topics([topic, f"{topic}.fragments", f"{topic}.handoff"], partitions=1)
    mean_size = ingest.produce(bootstrap, topic, n, features)
    sample = list(ingest.iter_records(ingest.PARSE_SAMPLE, features))
    parse_us = ingest.parse_us_per_record(sample)
    window_us = ingest.window_us_per_record(sample, ingest.bench_schema(features))
    decode_us = fragment_decode_us_per_record(sample)
    print(f"wide records: {features} features, {mean_size:.0f} bytes (mean), {n} records")
    print(
        f"without Kafka (CPU, best of 5): parse_prediction {parse_us:.2f} us, "
        f"fragments.decode {decode_us:.2f} us, WindowManager.add {window_us:.2f} us"
    )
    result = ingest.compare(bootstrap, topic, n, repeats)
    ingest.report(result)
    # The first agent pass's fragments, read back as the evaluate stage's consumer reads them.
    fetched = ingest.bare_consume(
        bootstrap, f"{topic}.fragments", result.fragments_sent, ingest.agent_consumer_options()
    )
    fetch_us = fetched.cpu_us_per_msg * result.fragments_sent / max(result.accepted, 1)
    print(f"evaluate stage: fetching the fragments {fetch_us:.2f} us CPU per record")
    agent_cpu = ingest.median(result.agent, "cpu_us_per_msg")
    per_core = _per_core("kafka-python", agent_cpu, fetch_us, decode_us, window_us, result)
    # The same with kafka.client: librdkafka (both stages read through it).
    print()
    rd_result = ingest.compare(bootstrap, topic, n, repeats, "librdkafka")
    ingest.report(rd_result, "librdkafka")
    rd_fetched = bare_consume_librdkafka(bootstrap, f"{topic}.fragments", result.fragments_sent)
    rd_fetch_us = rd_fetched.cpu_us_per_msg * result.fragments_sent / max(result.accepted, 1)
    print(f"evaluate stage (librdkafka): fetching the fragments {rd_fetch_us:.2f} us CPU per record")
    rd_cpu = ingest.median(rd_result.agent, "cpu_us_per_msg")
    rd_per_core = _per_core("librdkafka", rd_cpu, rd_fetch_us, decode_us, window_us, rd_result)
    print(f"per core, librdkafka over kafka-python: {rd_per_core / per_core:.2f}")
    # What reading and parsing alone allow: no agent on kafka-python that decodes these records'
    # JSON into Python values can go faster, whatever it does with them. Agents that share work
    # through Kafka also hand every record to its model's evaluator: encode, produce, fetch.
    bare_cpu = ingest.median(result.bare, "cpu_us_per_msg")
    encode_us, produced = handoff_us_per_record(bootstrap, f"{topic}.handoff", sample, n)
    produce_us = produced["kafka-python"]
    print(
        f"producing fragments (CPU per record, acks=all): kafka-python {produce_us:.1f} us, "
        f"librdkafka {produced['librdkafka']:.1f} us"
    )
    floor = bare_cpu + parse_us + encode_us + produce_us + fetch_us
    print(
        f"ceiling of consuming + parsing alone: {1e6 / (bare_cpu + parse_us):,.0f} records/s per core "
        f"(bare loop {bare_cpu:.1f} + parse_prediction {parse_us:.1f} us CPU per record)"
    )
    print(
        f"ceiling with the hand-off to the evaluator, windows free: {1e6 / floor:,.0f} records/s per "
        f"core (+ encode {encode_us:.1f} + produce {produce_us:.1f} + fetch {fetch_us:.1f} us)"
    )


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.ingest_wide", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_INGEST_WIDE_N", WIDE_N)))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args([] if argv is None else argv)
    # The agent runs with these GC settings (agent.app.run); both paths share the process.
    process.tune_gc()
    with broker.EmbeddedBroker() as embedded:
        wide(embedded, args.n, args.repeats, WIDE_FEATURES)


if __name__ == "__main__":
    run(sys.argv[1:])

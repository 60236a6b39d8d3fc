"""A consumer process for the crash test: KafkaSource -> parse -> append ids (fsync) -> commit.

Run: ``python -m tests.integration.kafka.crash_consumer BOOTSTRAP TOPIC GROUP OUT [--hang-after N]``.
With ``--hang-after N`` it stops for good once N records are written but before committing
their batch: the test SIGKILLs it there, the worst moment for at-least-once.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys

from agent import settings
from agent.ingest import parsing, records, source


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--hang-after", type=int, default=0)
    args = parser.parse_args(argv)
    config = settings.KafkaSettings(
        bootstrap_servers=args.bootstrap,
        predictions_topic=args.topic,
        group_id=args.group,
        max_poll_records=25,
        poll_timeout_ms=200,
        max_poll_interval_ms=2000,
        session_timeout_ms=2000,
    )
    record_parser = parsing.RecordParser()
    kafka_source = source.KafkaSource(config)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    written = 0
    with args.out.open("a", encoding="utf-8") as out:
        while not stopping:
            batch = kafka_source.poll_batch()
            if not batch:
                continue
            for message in batch:
                parsed = record_parser.parse_prediction(message.value)
                name = parsed.request_id if isinstance(parsed, records.PredictionRecord) else "rejected"
                out.write(name + "\n")
            # Durable before the commit: this ordering is what makes the pipeline at-least-once.
            out.flush()
            os.fsync(out.fileno())
            written += len(batch)
            if args.hang_after and written >= args.hang_after:
                print("hanging", flush=True)
                signal.pause()  # the test kills us here, results durable, offsets not committed
            kafka_source.commit(batch)
    kafka_source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""`python -m bench memory`: peak RSS and records/s of the agent's ingest, label join and windowing.

Each case runs in a fresh process (peak RSS is per process: VmHWM from /proc/self/status), fed
from a generator in the same process, no Kafka: every message goes through ``IngestWorker.add``
(parse, validate, label join), the worker's fragments are encoded and decoded as between the
ingest and evaluate stages, and each entry is added to the prediction or the label-joined
``WindowManager`` (windows closed into arrays, then dropped: the detectors are other benchmarks).
The baseline of each case is the same generator alone in a fresh process with the same imports,
so the ratio is what the agent holds beyond the interpreter and its libraries.

With labels flowing, every record's label comes: most 500 records later, one in ten 20 000
records later (late), one in fifty never (it waits out labels.ttl_s). Record i is stamped
``T0 + i / 100`` s (event time; the join's clock).

Environment overrides (defaults in brackets): ``BENCH_MEMORY_RECORDS`` [100000,1000000]
(records of the cases without labels), ``BENCH_MEMORY_LABELLED_RECORDS`` [100000] (with labels
flowing: the agent handles two messages per record, so 10^6 of them take ~7 minutes at 200
features on the 2-core machine; the default stays within ~5 minutes in all), ``BENCH_MEMORY_WIDTHS``
[20,200,768e] (features per record; ``768e`` is a 768-dimension embedding beside 20 features).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator

from agent import settings as settings_mod
from agent.ingest import fragments, parsing, records, source, worker
from agent.pipeline import reference, windows
from agent.runtime import process

CHART_LIMIT_MIB = 1024  # the chart's default limits.memory for the agent container
T0 = 1_700_000_000.0
RECORDS_PER_S = 100.0  # event time between records
POOL = 512  # distinct feature payloads, rendered once (the generator must cost little per record)
LABEL_LAG = 500
LATE_LABEL_LAG = 20_000
LATE_EVERY = 10
NEVER_EVERY = 50
BATCH = 1000  # records between take() and expire(), as the loop does between commits
PREDICTIONS_TOPIC = "predictions"
LABELS_TOPIC = "labels"
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Case:
    width: int  # scalar features per record
    embedding_dim: int  # 0 = no embedding
    records: int
    labels: bool

    @property
    def name(self) -> str:
        shape = f"{self.width} features" + (
            f" + {self.embedding_dim}-d embedding" if self.embedding_dim else ""
        )
        return f"{shape}, {self.records:>9,} records, labels {'yes' if self.labels else 'no '}"


def _pool(width: int, embedding_dim: int) -> list[bytes]:
    rng = random.Random(7)
    chunks = []
    for _ in range(POOL):
        body = {f"feat_{i:03d}": round(rng.gauss(0.0, 1.0), 5) for i in range(width)}
        text = json.dumps(body)
        if embedding_dim:
            vector = [round(rng.gauss(0.0, 1.0), 4) for _ in range(embedding_dim)]
            text += ',"embeddings":' + json.dumps({"text": vector})
        chunks.append(text.encode())
    return chunks


def messages(case: Case) -> Iterator[source.RawMessage]:
    """The case's predictions, with its labels interleaved as they arrive (see the module doc)."""
    pool = _pool(case.width, case.embedding_dim)
    for index in range(case.records):
        stamp = T0 + index / RECORDS_PER_S
        value = (
            b'{"request_id":"req-%09d","timestamp":%.2f,"model_name":"fraud","model_version":"v3",'
            b'"prediction":%.4f,"confidence":0.9,"latency_ms":12.5,"features":%s}'
            % (index, stamp, (index % 97) / 97, pool[index % POOL])
        )
        yield source.RawMessage(PREDICTIONS_TOPIC, 0, index, value, int(stamp * 1000))
        if case.labels:
            yield from _labels_due(index, stamp)


def _labels_due(index: int, stamp: float) -> Iterator[source.RawMessage]:
    for labelled, late in ((index - LABEL_LAG, False), (index - LATE_LABEL_LAG, True)):
        if labelled < 0 or labelled % NEVER_EVERY == 1 or (labelled % LATE_EVERY == 0) != late:
            continue
        value = b'{"request_id":"req-%09d","timestamp":%.2f,"label":%d}' % (labelled, stamp, labelled % 2)
        yield source.RawMessage(LABELS_TOPIC, 0, labelled, value, int(stamp * 1000))


class AgentPath:
    """Ingest worker (join only with labels), fragments round trip, both kinds of windows."""

    def __init__(self, case: Case, clock: list[float]) -> None:
        settings = settings_mod.AgentSettings()
        labels_topic = LABELS_TOPIC if case.labels else None
        self.worker = worker.IngestWorker(
            parser=parsing.RecordParser(settings.mapping, settings.kafka.max_message_bytes),
            labels_topic=labels_topic,
            join=worker.join_from(
                settings.labels.ttl_s,
                settings.labels.max_pending,
                labels_topic,
                lambda: clock[0],
                max_bytes=settings.memory.bytes_for("label_join"),
            ),
            producer="bench",
            max_fragment_records=settings.streams.max_fragment_records,
        )
        schema = _schema(case)
        self.predictions = windows.WindowManager(settings.window, schema, clock=lambda: clock[0])
        self.joined = windows.WindowManager(settings.window, schema, clock=lambda: clock[0])
        self.windows_closed = 0
        self.rejected = 0

    def add(self, message: source.RawMessage) -> None:
        self.rejected += len(self.worker.add(message))

    def drain(self) -> None:
        self.worker.expire()
        for fragment in self.worker.take():
            for entry in fragments.decode(fragments.encode(fragment)).entries:
                if entry.labelled:
                    closed = self.joined.add(entry.record, entry.index, label=entry.label)
                else:
                    closed = self.predictions.add(entry.record, entry.index)
                self.windows_closed += len(closed)


def _schema(case: Case) -> reference.FeatureSchema:
    """The schema the agent would fix from its reference (the stream's first 100 records)."""
    parser = parsing.RecordParser()
    sample = (parser.parse_prediction(m.value) for m in messages(dataclasses.replace(case, records=100)))
    return reference.FeatureSchema.infer(r for r in sample if isinstance(r, records.PredictionRecord))


def _memory_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(mode: str, case: Case) -> dict[str, float]:
    """One case in this process: generate in batches, time the agent apart from the generator."""
    clock = [T0]
    path = AgentPath(case, clock) if mode == "agent" else None
    stream = messages(case)
    generate_s = agent_s = 0.0
    rss_half = 0
    done = 0
    while True:
        started = time.perf_counter()
        batch = [m for _, m in zip(range(BATCH), stream, strict=False)]
        generate_s += time.perf_counter() - started
        if not batch:
            break
        done += sum(1 for m in batch if m.topic == PREDICTIONS_TOPIC)
        if done >= case.records // 2 and not rss_half:
            rss_half = _memory_kib("VmRSS")
        if path is None:
            continue
        started = time.perf_counter()
        for message in batch:
            clock[0] = message.timestamp_ms / 1000
            path.add(message)
        path.drain()
        agent_s += time.perf_counter() - started
    join = path.worker.join if path is not None else None
    return {
        "generate_s": generate_s,
        "agent_s": agent_s,
        "peak_mib": _memory_kib("VmHWM") / 1024,
        "rss_half_mib": rss_half / 1024,
        "rss_end_mib": _memory_kib("VmRSS") / 1024,
        "joined": float(path.worker.counts.joined) if path is not None else 0.0,
        "windows": float(path.windows_closed) if path is not None else 0.0,
        "rejected": float(path.rejected) if path is not None else 0.0,
        "join_mib": join.held_bytes / MIB if join is not None else 0.0,
        "join_evicted": float(join.evicted_predictions + join.evicted_labels) if join is not None else 0.0,
    }


def _spawn(mode: str, case: Case) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.memory", mode, str(case.width), str(case.embedding_dim)]
    argv += [str(case.records), str(int(case.labels))]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.memory {mode} {case.name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _widths() -> list[tuple[int, int]]:
    shapes = []
    for item in os.environ.get("BENCH_MEMORY_WIDTHS", "20,200,768e").split(","):
        shape = item.strip()
        shapes.append((20, int(shape[:-1])) if shape.endswith("e") else (int(shape), 0))
    return shapes


def _counts(name: str, default: str) -> list[int]:
    return [int(n) for n in os.environ.get(name, default).split(",") if n.strip()]


def cases() -> list[Case]:
    unlabelled = _counts("BENCH_MEMORY_RECORDS", "100000,1000000")
    labelled = _counts("BENCH_MEMORY_LABELLED_RECORDS", "100000")
    return [
        Case(w, e, n, flowing)
        for w, e in _widths()
        for flowing, sizes in ((False, unlabelled), (True, labelled))
        for n in sizes
    ]


def run() -> None:
    budget = settings_mod.AgentSettings().memory
    print(
        f"memory: ingest + label join + windowing, one process per case; chart limit {CHART_LIMIT_MIB} MiB, "
        f"memory budget {budget.budget_bytes / MIB:.0f} MiB (label join share "
        f"{budget.bytes_for('label_join') / MIB:.0f} MiB)"
    )
    header = (
        f"{'case':<58} {'rec/s':>8} {'peak MiB':>9} {'base MiB':>9} {'ratio':>6} {'RSS half/end':>13} "
        f"{'join MiB':>9} {'evicted':>8} {'% limit':>8}"
    )
    print(header)
    for case in cases():
        base = _spawn("baseline", case)
        agent = _spawn("agent", case)
        if agent["rejected"] or not agent["windows"]:
            raise RuntimeError(
                f"{case.name}: {agent['rejected']:.0f} records rejected, {agent['windows']:.0f} windows"
            )
        rate = case.records / agent["agent_s"] if agent["agent_s"] else float("nan")
        print(
            f"{case.name:<58} {rate:>8,.0f} {agent['peak_mib']:>9.0f} {base['peak_mib']:>9.0f} "
            f"{agent['peak_mib'] / base['peak_mib']:>6.2f} "
            f"{agent['rss_half_mib']:>6.0f}/{agent['rss_end_mib']:<6.0f} {agent['join_mib']:>9.1f} "
            f"{agent['join_evicted']:>8.0f} {100 * agent['peak_mib'] / CHART_LIMIT_MIB:>7.0f}%",
            flush=True,
        )


def main(argv: list[str]) -> int:
    mode, width, embedding_dim, count, labels = argv
    if mode not in ("agent", "baseline"):
        raise SystemExit(f"mode must be agent or baseline, got {mode!r}")
    case = Case(int(width), int(embedding_dim), int(count), bool(int(labels)))
    process.tune_gc()  # as the agent does once it is built (here, in the case's own process)
    print(json.dumps(child(mode, case)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

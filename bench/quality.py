"""Data-quality benchmark: false alarms of each check on stationary data, delay on injected breaks.

The agent runs as `drift-agent replay` on default settings. Streams: 8 Gaussian numeric features,
an integer age, a 6-value categorical and a long-tailed one (Zipf over 300 values, as product
ids or cities are), seeded; NASA's Statlog Shuttle set as shipped with River (public, numeric);
and the Solar Flare set shipped with River (public, categorical and integer features, 1066 rows
drawn with replacement). Each break is injected from the middle of the stream on; the Solar
Flare one is the break our users described: nulls in two features and a category never seen in
a third at once.

Per check: *false alarms* are quality incidents opened on the stationary streams (whole stream;
"pages" those that notified someone), per 100 000 records; *delay* is records from the break to
the first decision with that feature's quality incident open; "remediated" counts rollbacks or
retrains planned on broken streams (the goal: none). Beside the agent, the same breaks judged by
the default conditions of Evidently's data-quality tests as documented (reimplemented here on
tumbling windows of 1000 records: any value outside the reference's range or list, a missing
share above 1.1 x the reference's), to show what a stationary stream costs with them.

    python -m bench quality            # stream 100k, 3 seeds
    python -m bench.quality --quick    # stream 30k, 1 seed
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agent import replay
from agent import settings as settings_mod
from bench import detection

Record = dict[str, Any]
Break = Callable[[int, Record], None]
COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "PL")
REFERENCE = 10_000
WINDOW = 1000
ZIPF_VALUES = 300


def synthetic(rng: np.random.Generator, index: int) -> Record:
    x = rng.normal(size=8)
    city = int(min(rng.zipf(1.3), ZIPF_VALUES))
    features: dict[str, Any] = {f"x{i}": round(float(v), 4) for i, v in enumerate(x)}
    features |= {
        "age": int(rng.integers(18, 90)),
        "country": COUNTRIES[int(rng.integers(0, len(COUNTRIES)))],
        "city": f"c{city}",
    }
    return detection.prediction_record(index, features, float(x[0] + x[1] > 0))


def solar_flare_rows(seed: int, count: int) -> list[dict[str, Any]]:
    """``count`` rows drawn with replacement from the Solar Flare set (1066 rows, categorical and
    integer features), seeded: its empirical distribution as a stream."""
    from river import datasets  # noqa: PLC0415 - bench-only dependency

    rows = [dict(x) for x, _ in datasets.SolarFlare()]  # type: ignore[no-untyped-call]
    picks = np.random.default_rng(seed).integers(0, len(rows), count)
    return [dict(rows[i]) for i in picks]


def shuttle_rows(seed: int) -> list[dict[str, float]]:
    from river import datasets  # noqa: PLC0415 - bench-only dependency

    rows = [{k: float(v) for k, v in x.items()} for x, _ in datasets.Shuttle()]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


# -- breaks (one feature each; "x0"/"f1" numeric, "age" integer, "country" categorical) ------------


def nulls(feature: str, share: float) -> Break:
    def apply(i: int, r: Record) -> None:
        if (i * 7919) % 1000 < share * 1000:
            r["features"][feature] = None

    return apply


def renamed(feature: str) -> Break:
    def apply(i: int, r: Record) -> None:
        r["features"][feature + "_v2"] = r["features"].pop(feature)

    return apply


def unit_change(feature: str) -> Break:
    def apply(i: int, r: Record) -> None:
        r["features"][feature] = r["features"][feature] * 1000

    return apply


def every(n: int, feature: str, value: object) -> Break:
    def apply(i: int, r: Record) -> None:
        if i % n == 0:
            r["features"][feature] = value

    return apply


def the_issues_break(i: int, r: Record) -> None:
    """Nulls in two features and a category never seen in a third (Solar Flare: class A exists
    in the Zurich scheme but not in the data)."""
    for feature in ("evolution", "area"):
        nulls(feature, 0.1)(i, r)
    every(20, "zurich-class", "A")(i, r)


def new_field(i: int, r: Record) -> None:
    r["features"]["channel"] = "web"


def duplicated(i: int, r: Record) -> None:
    if i % 10 == 0:
        r["request_id"] = f"r{i - 1}"


def frozen(feature: str, value: float) -> Break:
    def apply(i: int, r: Record) -> None:
        r["features"][feature] = value

    return apply


# (check, break name, stream kind, the break, the incident it should open)
BREAKS: tuple[tuple[str, str, str, Break, str], ...] = (
    ("missing_values", "30 % nulls in x0", "synthetic", nulls("x0", 0.3), "x0"),
    ("missing_values", "10 % nulls in x0", "synthetic", nulls("x0", 0.1), "x0"),
    ("schema", "x0 renamed", "synthetic", renamed("x0"), "x0"),
    ("schema", "a new field", "synthetic", new_field, "records"),
    ("type_mismatch", "5 % strings in age", "synthetic", every(20, "age", "n/a"), "age"),
    ("out_of_range", "x0 in milli-units (x1000)", "synthetic", unit_change("x0"), "x0"),
    ("out_of_range", "5 % negative ages", "synthetic", every(20, "age", -1), "age"),
    ("unseen_categories", "10 % of a new country", "synthetic", every(10, "country", "ZZ"), "country"),
    ("frozen_features", "x0 stuck at its mean", "synthetic", frozen("x0", 0.0), "x0"),
    ("duplicate_ids", "10 % repeated request ids", "synthetic", duplicated, "records"),
    ("missing_values", "30 % nulls in f1 (Shuttle)", "shuttle", nulls("f1", 0.3), "f1"),
    ("out_of_range", "f1 x1000 (Shuttle)", "shuttle", unit_change("f1"), "f1"),
    ("missing_values", "10 % nulls in 2 (Solar Flare)", "solar_flare", the_issues_break, "evolution"),
    ("unseen_categories", "same: 5 % zurich-class A", "solar_flare", the_issues_break, "zurich-class"),
)


def stream(kind: str, length: int, seed: int, breaks: Break | None) -> tuple[list[Record], list[Record]]:
    if kind == "synthetic":
        rng = np.random.default_rng(seed)
        reference = [synthetic(rng, -1 - i) for i in range(REFERENCE)]
        records = [synthetic(rng, i) for i in range(length)]
    elif kind == "solar_flare":
        rows = solar_flare_rows(seed, REFERENCE + length)
        reference = [detection.prediction_record(-1 - i, row, 1.0) for i, row in enumerate(rows[:REFERENCE])]
        records = [detection.prediction_record(i, row, 1.0) for i, row in enumerate(rows[REFERENCE:])]
    else:
        rows = shuttle_rows(seed)
        reference = [detection.prediction_record(-1 - i, row, 1.0) for i, row in enumerate(rows[:REFERENCE])]
        pool = rows[REFERENCE:]
        records = [detection.prediction_record(i, dict(pool[i % len(pool)]), 1.0) for i in range(length)]
    if breaks is not None:
        for i in range(length // 2, length):
            breaks(i, records[i])
    return reference, records


def agent_events(reference: Sequence[Record], records: Sequence[Record], scratch: pathlib.Path) -> list[Any]:
    def write(name: str, rows: Sequence[Record]) -> pathlib.Path:
        path = scratch / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    out = scratch / "events.jsonl"
    with contextlib.redirect_stderr(io.StringIO()):
        replay.run_replay(
            settings_mod.AgentSettings(),
            reference_path=write("reference.jsonl", reference),
            stream=write("stream.jsonl", records),
            labels=None,
            events_out=out,
        )
    return [json.loads(line) for line in out.read_text().splitlines()]


def quality_openings(events: Sequence[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Per check: quality incidents opened, and of those the ones that notified someone."""
    opened: dict[str, int] = {}
    paged: dict[str, int] = {}
    checks_of: dict[str, set[str]] = {}
    for event in events:
        if (
            event["type"] == "result"
            and event["family"] == "quality"
            and event["drifted"]
            and event["statistic"] != "failed_checks"
        ):
            checks_of.setdefault(event["feature"] or "records", set()).add(event["detector"])
        if event["type"] != "decision":
            continue
        for action in event["actions"]:
            incident = action["incident_id"]
            if "/quality/" not in incident or not action["idempotency_key"].endswith(
                ("/minor", "/moderate", "/severe", "/critical")
            ):
                continue
            group = incident.split("/quality/")[1].split("@")[0]
            for check in checks_of.get(group, {"?"}):
                opened[check] = opened.get(check, 0) + 1
                if action["kind"] in ("alert", "page"):
                    paged[check] = paged.get(check, 0) + 1
    return opened, paged


def delay(events: Sequence[Any], group: str, change: int) -> int | None:
    for event in events:
        if event["type"] == "decision" and any(i.endswith(f"/quality/{group}") for i in event["incidents"]):
            return int(event["record_index"]) - change
    return None


def remediations(events: Sequence[Any], change: int) -> int:
    """Rollbacks and retrains planned from the break on (before it the stream is stationary: those
    are the drift detectors' false alarms, the detection benchmark's business)."""
    return sum(
        1
        for e in events
        if e["type"] == "decision" and e["record_index"] >= change
        for a in e["actions"]
        if a["kind"] in ("retrain", "rollback")
    )


def evidently_conditions(reference: Sequence[Record], records: Sequence[Record]) -> int:
    """Windows failing Evidently's default data-quality conditions (reimplemented, see docstring)."""
    names = list(reference[0]["features"])
    numeric = [n for n in names if isinstance(reference[0]["features"][n], int | float)]
    low = {n: min(r["features"][n] for r in reference) for n in numeric}
    high = {n: max(r["features"][n] for r in reference) for n in numeric}
    listed = {n: {r["features"][n] for r in reference} for n in names if n not in numeric}
    missing = {n: sum(r["features"].get(n) is None for r in reference) / len(reference) for n in names}
    failed = 0
    for start in range(0, len(records) - WINDOW + 1, WINDOW):
        window = records[start : start + WINDOW]
        bad = False
        for n in names:
            values = [r["features"].get(n) for r in window]
            present = [v for v in values if v is not None]
            share = 1 - len(present) / len(values)
            bad |= share > 1.1 * missing[n] and share > 0
            if n in numeric:
                bad |= any(not isinstance(v, int | float) or v < low[n] or v > high[n] for v in present)
            else:
                bad |= any(v not in listed[n] for v in present)
        failed += bad
    return failed


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality")
    parser.add_argument("--quick", action="store_true", help="stream 30k, 1 seed")
    args = parser.parse_args(argv if argv is not None else [])
    length, seeds = (30_000, 1) if args.quick else (100_000, 3)
    print(f"\n== data quality: stream {length} records, reference {REFERENCE}, {seeds} seed(s) ==")
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = pathlib.Path(scratch_dir)
        for kind in ("synthetic", "shuttle", "solar_flare"):
            opened: dict[str, int] = {}
            paged: dict[str, int] = {}
            evidently = 0
            for seed in range(seeds):
                reference, records = stream(kind, length, seed, None)
                found, notified = quality_openings(agent_events(reference, records, scratch))
                for check, n in found.items():
                    opened[check] = opened.get(check, 0) + n
                for check, n in notified.items():
                    paged[check] = paged.get(check, 0) + n
                evidently += evidently_conditions(reference, records)
            per = 100_000 / (length * seeds)
            shown = ", ".join(f"{c} {n * per:.1f}" for c, n in sorted(opened.items())) or "none"
            pages = ", ".join(f"{c} {n * per:.1f}" for c, n in sorted(paged.items())) or "none"
            windows = length * seeds // WINDOW
            print(f"stationary {kind}: incidents opened per 100k records: {shown}; pages: {pages}")
            print(f"  Evidently's default conditions: {evidently} of {windows} windows failed")
        print(f"{'check':<18} {'break':<30} {'delay (median)':>15} {'remediated':>11}")
        for check, name, kind, breaks, group in BREAKS:
            delays: list[int] = []
            remediated = 0
            for seed in range(seeds):
                reference, records = stream(kind, length, seed, breaks)
                events = agent_events(reference, records, scratch)
                first = delay(events, group, length // 2)
                delays.append(first if first is not None else sys.maxsize)
                remediated += remediations(events, length // 2)
            median = statistics.median(delays)
            said = "-" if median == sys.maxsize else f"{median:.0f}"
            print(f"{check:<18} {name:<30} {said:>15} {remediated:>11}")


if __name__ == "__main__":
    run(sys.argv[1:])

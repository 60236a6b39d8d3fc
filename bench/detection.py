"""Detection benchmark: how soon a real change pages a human, and how often it pages for nothing.

Streams are generated here, seeded, and nothing in the agent is tuned on them. For each
scenario the agent runs as `drift-agent replay` on default settings (reference file, stream,
labels where the scenario has them); a *page* is a decision of severity moderate or worse that
notifies someone (alert, page or an action). Beside it, in the same run:

- River's ADWIN, Page-Hinkley and DDM, fed the per-record error stream (label-carrying scenarios);
- Evidently's column drift test on tumbling windows of ``PEER_WINDOW`` records against the same
  reference, a window flagged when any column's test fails (data scenarios);
- the rule "p95 of gpu_latency_ms > 1.1 x the reference's" on the same windows (latency).

Streams: Gaussian features (stationary, mean shifts, a categorical share shift), GPU latency,
River's SEA, Agrawal, STAGGER and Hyperplane generators (stationary, abrupt, gradual; the served
model a decision tree fitted on held-out rows of the first concept), and public data (NASA's
Statlog Shuttle set as shipped with River: stationary, and a covariate shift to a new segment).

Per scenario and detector: false alarms (pages or detections before the change; on stationary
streams, over the whole stream) and delay (records from the change to the first page or
detection at or after it; "-" when none came). Medians over the seeds. A row meets the goal when
the agent's false alarms are no more than the best peer's and its delay no longer than the best
peer's; otherwise the row says by how much it loses.

    python -m bench detection              # reference 20k, stream 100k, 3 seeds
    python -m bench.detection --quick      # reference 5k, stream 30k, 1 seed
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import itertools
import json
import math
import pathlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from agent import replay
from agent import settings as settings_mod

PEER_WINDOW = 5_000
P95_RULE = 1.1
PAGING = ("moderate", "severe", "critical")


@dataclasses.dataclass(frozen=True)
class Size:
    reference: int
    stream: int
    seeds: int

    @property
    def change(self) -> int:
        return self.stream // 2


FULL = Size(20_000, 100_000, 3)
QUICK = Size(5_000, 30_000, 1)


@dataclasses.dataclass
class Stream:
    reference: list[dict[str, Any]]
    records: list[dict[str, Any]]
    labels: list[dict[str, Any]] | None
    change: int | None  # record index of the change; None: stationary
    errors: np.ndarray | None = None  # 1.0 per wrong prediction, for the streaming peers


@dataclasses.dataclass(frozen=True)
class Outcome:
    false_alarms: int
    delay: int | None


# -- streams -------------------------------------------------------------------------------------


def prediction_record(
    index: int, features: dict[str, Any], prediction: float, **extra: Any
) -> dict[str, Any]:
    return {
        "request_id": f"r{index}",
        "timestamp": 1_700_000_000 + index * 0.01,
        "model_name": "bench",
        "model_version": "1",
        "features": features,
        "prediction": prediction,
        **extra,
    }


def gaussian(
    size: Size, seed: int, *, features: int, shifted: int, categorical: bool = False, long_tail: bool = False
) -> Stream:
    """``features`` N(0, 1) columns; from the change, the first ``shifted`` move by 0.5 sd.
    ``categorical``: one more column whose shares move from (.5, .3, .2) to (.3, .3, .4).
    ``long_tail``: one more, stationary column of 300 values with Zipf(1.3) shares (cities, product
    ids)."""
    rng = np.random.default_rng(seed)
    change = size.change if shifted or categorical else None

    def draw(index: int, after: bool) -> dict[str, Any]:
        x = rng.normal(size=features)
        if after:
            x[:shifted] += 0.5
        row: dict[str, Any] = {f"f{j}": float(x[j]) for j in range(features)}
        if categorical:
            shares = (0.3, 0.3, 0.4) if after else (0.5, 0.3, 0.2)
            row["colour"] = str(rng.choice(["red", "green", "blue"], p=shares))
        if long_tail:
            row["city"] = f"c{min(int(rng.zipf(1.3)), 300)}"
        return prediction_record(index, row, float(x[-1] > 0))

    reference = [draw(-1 - i, False) for i in range(size.reference)]
    records = [draw(i, change is not None and i >= change) for i in range(size.stream)]
    return Stream(reference, records, None, change)


def latency(size: Size, seed: int) -> Stream:
    """GPU latency lognormal around 5 ms; from the change every request is 30% slower."""
    rng = np.random.default_rng(seed)

    def draw(index: int, factor: float) -> dict[str, Any]:
        x = rng.normal(size=5)
        gpu = float(rng.lognormal(math.log(5.0), 0.25)) * factor
        return prediction_record(
            index, {f"f{j}": float(x[j]) for j in range(5)}, float(x[0] > 0), gpu_latency_ms=gpu
        )

    reference = [draw(-1 - i, 1.0) for i in range(size.reference)]
    records = [draw(i, 1.3 if i >= size.change else 1.0) for i in range(size.stream)]
    return Stream(reference, records, None, size.change)


def _river(name: str, concept: int, seed: int) -> Any:
    """River's generator ``name`` with its ``concept``-th concept (classification function)."""
    from river.datasets import synth  # noqa: PLC0415 - bench-only dependency

    if name == "SEA":
        return synth.SEA(variant=concept, noise=0.1, seed=seed)
    if name == "Agrawal":
        return synth.Agrawal(classification_function=concept, perturbation=0.05, seed=seed)
    if name == "STAGGER":
        return synth.STAGGER(classification_function=concept, seed=seed)
    # Hyperplane's concept is its random weights: another seed, another hyperplane.
    return synth.Hyperplane(seed=seed + 1000 * concept, n_features=10, noise_percentage=0.05)


# Concepts before and after the change per generator (STAGGER has three, SEA and Agrawal more).
_CONCEPTS = {"SEA": (0, 3), "Agrawal": (0, 2), "STAGGER": (0, 1), "Hyperplane": (0, 1)}


def concept_change(size: Size, seed: int, *, generator: str, width: int | None) -> Stream:
    """River's ``generator``: concept A, then B centred on ``size.change`` over ``width`` records
    (1: abrupt; None: no change, concept A throughout). The served model is a decision tree fitted
    on rows of concept A drawn before the reference (the reference is held-out data, as a
    validation set is), so its errors rise when the concept moves. A gradual change
    counts from half a width before its centre, where the new concept already has 12% of the
    traffic (River's sigmoid): pages from there on are detections."""
    from river.datasets import synth  # noqa: PLC0415 - bench-only dependency
    from sklearn import tree  # noqa: PLC0415

    training = size.reference
    total = training + size.reference + size.stream
    position = training + size.reference + size.change
    first, second = _CONCEPTS[generator]
    before, after = _river(generator, first, seed), _river(generator, second, seed + 1)
    rows: Iterable[tuple[dict[Any, float], Any]]
    if width is None:
        rows = before.take(total)
    elif width <= 1:
        # Abrupt: the second concept from ``position`` on (River's ConceptDriftStream overflows in
        # its sigmoid for a width of 1 on long streams).
        rows = itertools.chain(before.take(position), after.take(total - position))
    else:
        rows = synth.ConceptDriftStream(
            stream=before, drift_stream=after, position=position, width=width, seed=seed
        ).take(total)
    features, truth = zip(
        *[({f"x{k}": float(v) for k, v in x.items()}, float(y)) for x, y in rows], strict=True
    )
    columns = sorted(features[0])
    matrix = np.asarray([[row[c] for c in columns] for row in features])
    served = tree.DecisionTreeClassifier(max_depth=8, random_state=seed)
    served.fit(matrix[:training], truth[:training])
    predictions = served.predict(matrix[training:]).tolist()
    truth = truth[training:]
    records = [
        prediction_record(index - size.reference, row, float(prediction))
        for index, (row, prediction) in enumerate(zip(features[training:], predictions, strict=True))
    ]
    labels = [
        {"request_id": row["request_id"], "timestamp": row["timestamp"] + 0.001, "label": label}
        for row, label in zip(records, truth, strict=True)
    ]
    errors = np.asarray(predictions) != np.asarray(truth)
    change = None if width is None else size.change - (width // 2 if width > 1 else 0)
    return Stream(
        [{**row, "label": label} for row, label in zip(records[: size.reference], truth, strict=False)],
        records[size.reference :],
        labels[size.reference :],
        change,
        errors[size.reference :].astype(np.float64),
    )


# Public data: NASA's Statlog Shuttle set (UCI; 49 097 rows, 9 numeric features, shipped with River).
SHUTTLE_TRAINING, SHUTTLE_REFERENCE, SHUTTLE_STREAM = 4_000, 10_000, 30_000


def shuttle(size: Size, seed: int, *, shift: bool) -> Stream:
    """Shuttle rows in a seeded random order: a decision tree trained on the first 4000, a
    10 000-row reference, then a 30 000-row stream (the set has no more). ``shift``: from the middle
    of the stream on, only rows whose f1 is at or above the reference's 40th percentile come (drawn
    with replacement): a covariate shift of real data, as when a new segment of traffic arrives.
    The shifted stream carries no labels, so its peer is Evidently's column test; the stationary
    one carries them (ADWIN runs in the agent, River's detectors are its peers)."""
    from river import datasets  # noqa: PLC0415 - bench-only dependency
    from sklearn import tree  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    rows = [({k: float(v) for k, v in x.items()}, float(y)) for x, y in datasets.Shuttle()]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    columns = sorted(rows[0][0])
    served = tree.DecisionTreeClassifier(max_depth=8, random_state=seed)
    served.fit(
        [[x[c] for c in columns] for x, _ in rows[:SHUTTLE_TRAINING]], [y for _, y in rows[:SHUTTLE_TRAINING]]
    )
    reference_rows = rows[SHUTTLE_TRAINING : SHUTTLE_TRAINING + SHUTTLE_REFERENCE]
    pool = rows[SHUTTLE_TRAINING + SHUTTLE_REFERENCE :]
    length = min(size.stream, SHUTTLE_STREAM)
    change = length // 2 if shift else None
    stream_rows = pool[: change if change is not None else length]
    if change is not None:
        floor = float(np.quantile([x["f1"] for x, _ in reference_rows], 0.4))
        shifted = [row for row in pool[change:] if row[0]["f1"] >= floor]
        stream_rows += [shifted[i] for i in rng.integers(0, len(shifted), length - change)]
    every = reference_rows + stream_rows
    predictions = served.predict([[x[c] for c in columns] for x, _ in every]).tolist()
    records = [
        prediction_record(index - len(reference_rows), x, float(prediction))
        for index, ((x, _), prediction) in enumerate(zip(every, predictions, strict=True))
    ]
    truth = [y for _, y in every]
    stream_records = records[len(reference_rows) :]
    labels = [
        {"request_id": row["request_id"], "timestamp": row["timestamp"] + 0.001, "label": label}
        for row, label in zip(stream_records, truth[len(reference_rows) :], strict=True)
    ]
    errors = (np.asarray(predictions) != np.asarray(truth))[len(reference_rows) :].astype(np.float64)
    return Stream(
        [{**row, "label": label} for row, label in zip(records[: len(reference_rows)], truth, strict=False)],
        stream_records,
        None if shift else labels,
        change,
        None if shift else errors,
    )


SCENARIOS: dict[str, Callable[[Size, int], Stream]] = {
    "stationary, 20 features": lambda size, seed: gaussian(size, seed, features=20, shifted=0),
    "stationary, 100 features": lambda size, seed: gaussian(size, seed, features=100, shifted=0),
    "stationary, long-tail categorical": lambda size, seed: gaussian(
        size, seed, features=20, shifted=0, long_tail=True
    ),
    "mean +0.5 sd in 1 of 20": lambda size, seed: gaussian(size, seed, features=20, shifted=1),
    "mean +0.5 sd in 3 of 20": lambda size, seed: gaussian(size, seed, features=20, shifted=3),
    "categorical shares shift": lambda size, seed: gaussian(
        size, seed, features=20, shifted=0, categorical=True
    ),
    "GPU latency +30%": latency,
    **{
        f"{generator} {kind}": functools.partial(concept_change, generator=generator, width=width)
        for generator in _CONCEPTS
        for kind, width in (("stationary", None), ("abrupt", 1), ("gradual", 10_000))
    },
    "Shuttle (public) stationary": functools.partial(shuttle, shift=False),
    "Shuttle (public) covariate shift": functools.partial(shuttle, shift=True),
}


# -- the agent -----------------------------------------------------------------------------------


def _write(path: pathlib.Path, rows: Sequence[dict[str, Any]]) -> pathlib.Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def agent_pages(stream: Stream, scratch: pathlib.Path) -> list[int]:
    """Record indices where the agent's replay on default settings paged someone."""
    out = scratch / "events.jsonl"
    with contextlib.redirect_stderr(io.StringIO()):
        replay.run_replay(
            settings_mod.AgentSettings(),
            reference_path=_write(scratch / "reference.jsonl", stream.reference),
            stream=_write(scratch / "stream.jsonl", stream.records),
            labels=_write(scratch / "labels.jsonl", stream.labels) if stream.labels is not None else None,
            events_out=out,
        )
    pages = []
    for line in out.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "decision" and event["severity"] in PAGING and event["actions"]:
            pages.append(int(event["record_index"]))
    return pages


# -- the peers -----------------------------------------------------------------------------------


def river_detections(name: str, errors: np.ndarray) -> list[int]:
    from river import drift  # noqa: PLC0415 - bench-only dependency
    from river.drift import binary  # noqa: PLC0415

    detector: Any = {"ADWIN": drift.ADWIN, "Page-Hinkley": drift.PageHinkley, "DDM": binary.DDM}[name]()
    found = []
    for index, value in enumerate(errors.tolist()):
        detector.update(value)
        if detector.drift_detected:
            found.append(index)
    return found


def _windows(records: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Sequence[dict[str, Any]]]]:
    for start in range(0, len(records) - PEER_WINDOW + 1, PEER_WINDOW):
        yield start + PEER_WINDOW - 1, records[start : start + PEER_WINDOW]


def _frame(records: Sequence[dict[str, Any]]) -> Any:
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame([row["features"] for row in records])


def evidently_detections(stream: Stream) -> list[int]:
    """Ends of the windows where any column's Evidently drift test failed."""
    import evidently  # noqa: PLC0415 - bench-only dependency
    from evidently import presets  # noqa: PLC0415

    reference = _frame(stream.reference)
    categorical = [c for c in reference.columns if reference[c].dtype == object]
    definition = evidently.DataDefinition(
        numerical_columns=[c for c in reference.columns if c not in categorical],
        categorical_columns=categorical,
    )
    found = []
    for end, window in _windows(stream.records):
        snapshot = evidently.Report([presets.DataDriftPreset()], include_tests=True).run(
            evidently.Dataset.from_pandas(_frame(window), data_definition=definition),
            evidently.Dataset.from_pandas(reference, data_definition=definition),
        )
        tests = snapshot.dict()["tests"]
        if any(t["name"].startswith("Value Drift for column") and t["status"] == "FAIL" for t in tests):
            found.append(end)
    return found


def p95_rule_detections(stream: Stream) -> list[int]:
    reference = np.percentile([row["gpu_latency_ms"] for row in stream.reference], 95)
    return [
        end
        for end, window in _windows(stream.records)
        if np.percentile([row["gpu_latency_ms"] for row in window], 95) > P95_RULE * reference
    ]


def outcome(found: Sequence[int], change: int | None) -> Outcome:
    if change is None:
        return Outcome(len(found), None)
    after = [index for index in found if index >= change]
    return Outcome(sum(1 for index in found if index < change), after[0] - change if after else None)


def peers_of(name: str, stream: Stream) -> dict[str, Callable[[], list[int]]]:
    errors = stream.errors
    if errors is not None:

        def river(peer: str) -> Callable[[], list[int]]:
            return lambda: river_detections(peer, errors)

        return {peer: river(peer) for peer in ("ADWIN", "Page-Hinkley", "DDM")}
    if "latency" in name:
        return {"p95 > 1.1x rule": lambda: p95_rule_detections(stream)}
    return {"Evidently column test": lambda: evidently_detections(stream)}


# -- the table -----------------------------------------------------------------------------------


def _median(values: Sequence[int | None]) -> float | None:
    present = [value for value in values if value is not None]
    # A detector that missed the change in more than half the seeds has no median delay.
    if len(present) * 2 <= len(values) - 1 or not present:
        return None
    return float(statistics.median(present))


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def verdict(agent: tuple[float, float | None], peers: Mapping[str, tuple[float, float | None]]) -> str:
    best_alarms = min(alarms for alarms, _ in peers.values())
    delays = [delay for _, delay in peers.values() if delay is not None]
    best_delay = min(delays) if delays else None
    alarms, delay = agent
    losses = []
    if alarms > best_alarms:
        losses.append(f"{alarms - best_alarms:g} more false alarms")
    if best_delay is not None and (delay is None or delay > best_delay):
        losses.append("never pages" if delay is None else f"{delay - best_delay:,.0f} records later")
    return "meets" if not losses else "loses: " + ", ".join(losses)


CALIBRATION_RECORDS = 2_000_000
CALIBRATION_ERROR_RATES = (0.02, 0.1, 0.3)


def calibration(records: int = CALIBRATION_RECORDS) -> list[tuple[float, int]]:
    """ADWIN at the agent's defaults on stationary 0/1 error streams: (error rate, false alarms).

    The expected run time between false alarms, as Alibi Detect calibrates its online detectors:
    ``records / false alarms`` (or more than ``records`` when none came)."""
    from agent import settings as agent_settings  # noqa: PLC0415
    from detectors import registry, streaming  # noqa: PLC0415

    config = agent_settings.AgentSettings().detectors.detectors["adwin"]
    options = registry.default_registry().create("adwin", config).config
    found = []
    for rate in CALIBRATION_ERROR_RATES:
        errors = (np.random.default_rng(0).random(records) < rate).astype(np.float64)
        adwin = streaming.Adwin(
            delta=options.delta,
            clock=options.clock,
            max_buckets=options.max_buckets,
            min_window_length=options.min_window_length,
            grace_period=options.grace_period,
        )
        found.append((rate, len(adwin.update_many(errors))))
    return found


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.detection", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reference 5k, stream 30k, 1 seed")
    parser.add_argument("--only", action="append", default=None, help="run only scenarios containing this")
    args = parser.parse_args([] if argv is None else argv)
    size = QUICK if args.quick else FULL
    records = CALIBRATION_RECORDS // 10 if args.quick else CALIBRATION_RECORDS
    for rate, false_alarms in calibration(records):
        between = f"{records / false_alarms:,.0f}" if false_alarms else f"more than {records:,}"
        print(
            f"ADWIN as the agent runs it, stationary error rate {rate:.0%}: {false_alarms} false alarms in "
            f"{records:,} labelled records (expected records between false alarms: {between})"
        )
    print(
        f"detection benchmark: reference {size.reference:,}, stream {size.stream:,}, change at "
        f"{size.change:,} (none on stationary streams), {size.seeds} seed(s); peers' windows {PEER_WINDOW:,}"
    )
    print(f"{'scenario':<34}{'detector':<24}{'false alarms':>13}{'delay':>10}   goal")
    for name, make in SCENARIOS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        results: dict[str, list[Outcome]] = {}
        for seed in range(size.seeds):
            stream = make(size, seed)
            with tempfile.TemporaryDirectory(prefix="bench-detection-") as scratch:
                results.setdefault("drift-agent", []).append(
                    outcome(agent_pages(stream, pathlib.Path(scratch)), stream.change)
                )
            for peer, detect in peers_of(name, stream).items():
                results.setdefault(peer, []).append(outcome(detect(), stream.change))
        summary = {
            detector: (
                float(statistics.median(o.false_alarms for o in outcomes)),
                _median([o.delay for o in outcomes]),
            )
            for detector, outcomes in results.items()
        }
        agent = summary.pop("drift-agent")
        goal = verdict(agent, summary)
        for detector, (alarms, delay) in [("drift-agent", agent), *summary.items()]:
            shown_goal = goal if detector == "drift-agent" else ""
            print(f"{name:<34}{detector:<24}{alarms:>13g}{_shown(delay):>10}   {shown_goal}")
        sys.stdout.flush()


if __name__ == "__main__":
    run(sys.argv[1:])

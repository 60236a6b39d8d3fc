"""One model's evaluator: its state survives another process exactly; duplicate input counts once."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from agent import settings as settings_mod
from agent.evaluate import model as model_mod
from agent.ingest import fragments, parsing, records, worker
from agent.pipeline import engine as engine_mod
from agent.policy import decider

RECORDS = 6_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(RECORDS):
        x = rng.normal(size=3) + (1.0 if i > 3_500 else 0.0)
        lines.append(
            json.dumps(
                {
                    "request_id": f"r{i}",
                    "timestamp": 1_700_000_000 + i,
                    "model_name": "churn",
                    "model_version": "3",
                    "features": {"a": x[0], "b": x[1], "c": "xyz"[i % 3]},
                    "prediction": float(x[2] > 0),
                }
            ).encode()
        )
    return lines


def settings(**window: object) -> settings_mod.AgentSettings:
    return settings_mod.AgentSettings(
        window={"size": 500, **window},
        reference={"source": "first_n", "first_n": 1_000},
        detectors={"detectors": {"data_drift": {}, "prediction_drift": {}}},
    )


def fragment_batches(lines: list[bytes], batch: int) -> list[fragments.Fragment]:
    parser = parsing.RecordParser()
    ingest = worker.IngestWorker(
        parser=parser, labels_topic=None, join=None, producer="t", max_fragment_records=batch
    )
    out = []
    for index, line in enumerate(lines):
        parsed = parser.parse_prediction(line)
        assert not isinstance(parsed, records.Rejected)
        ingest.add_prediction(parsed, 0, index)
        if (index + 1) % batch == 0:
            out.extend(ingest.take())
    out.extend(ingest.take())
    # As the evaluate stage receives them: through the wire, features as rows of a shared layout.
    return [fragments.decode(fragments.encode(fragment)) for fragment in out]


def evaluator(config: settings_mod.AgentSettings, clock: Clock) -> model_mod.ModelEvaluator:
    factory = model_mod.EvaluatorFactory(
        config, reference_records=None, overrides_state=decider.empty_overrides, clock=clock
    )
    return factory.create("churn")


def summary(evaluation: engine_mod.Evaluation) -> tuple[object, ...]:
    decision = evaluation.decision
    return (
        evaluation.window.last_record_index,
        tuple((r.detector, r.feature, r.score, r.drifted) for r in evaluation.results),
        getattr(decision, "severity", None),
        tuple(a.idempotency_key for a in getattr(decision, "actions", ())),
    )


def run(
    evaluate: model_mod.ModelEvaluator, batches: list[fragments.Fragment], clock: Clock
) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for fragment in batches:
        clock.now = fragment.entries[-1].record.timestamp
        out.extend(summary(judged.evaluation) for judged in evaluate.apply(fragment))
    return out


def test_state_restored_in_a_fresh_evaluator_continues_exactly() -> None:
    batches = fragment_batches(stream(), 250)
    clock = Clock()
    whole = run(evaluator(settings(), clock), batches, clock)
    assert any(s[2] not in (None, "none") for s in whole), (
        "the drift decided nothing: the test would prove nothing"
    )

    first_clock = Clock()
    first = evaluator(settings(), first_clock)
    half = len(batches) // 2
    before = run(first, batches[:half], first_clock)
    stored = model_mod.encode_state(first.state())
    second_clock = Clock()
    second = evaluator(settings(), second_clock)
    dropped = second.restore(model_mod.decode_state(stored))
    assert not dropped.windows and not dropped.detectors
    after = run(second, batches[half:], second_clock)
    assert before + after == whole


def test_a_fragment_applied_twice_counts_once() -> None:
    batches = fragment_batches(stream(), 250)
    clock = Clock()
    once = evaluator(settings(), clock)
    twice = evaluator(settings(), Clock())
    expected = run(once, batches, clock)
    replayed_clock = Clock()
    results = []
    for fragment in batches:
        results.extend(run(twice, [fragment, fragment], replayed_clock))
    assert [r[0] for r in results] == [r[0] for r in expected]
    assert twice.predictions == once.predictions == RECORDS
    assert twice.duplicates == RECORDS


def test_state_the_settings_no_longer_fit_is_dropped_not_misapplied() -> None:
    batches = fragment_batches(stream(), 250)
    clock = Clock()
    first = evaluator(settings(), clock)
    run(first, batches[:6], clock)
    stored = first.state()
    resized = evaluator(settings(size=700), Clock())
    dropped = resized.restore(stored)
    assert dropped.windows and not dropped.detectors
    assert resized.engine.window_fill() == {}  # no 500-record buffer carried into 700-record windows
    assert resized.predictions == first.predictions  # what was counted stays counted


def test_a_state_of_another_format_or_model_is_refused() -> None:
    clock = Clock()
    state = evaluator(settings(), clock).state()
    with pytest.raises(model_mod.StateError, match="format"):
        evaluator(settings(), clock).restore(msgspec.structs.replace(state, format=99))
    with pytest.raises(model_mod.StateError, match="model"):
        evaluator(settings(), clock).restore(msgspec.structs.replace(state, model="other"))
    with pytest.raises(model_mod.StateError, match="unreadable"):
        model_mod.decode_state(b"\x00not msgpack")


def timed_fragment(partition: int, first: int, count: int, *, spacing_s: float = 1.0) -> fragments.Fragment:
    """``count`` records of input ``partition`` from event time ``first``, one per ``spacing_s``."""
    entries = []
    for i in range(first, first + count):
        record = records.PredictionRecord(
            f"r{partition}-{i}", i * spacing_s, "churn", "3", {"a": float(i % 7), "b": 0.0, "c": "x"}, 0.0
        )
        entries.append(fragments.Entry(record, i, fragments.PREDICTIONS, partition, i))
    return fragments.Fragment(
        fragments.FORMAT, "churn", entries, {partition: (first + count - 1) * spacing_s}, "t"
    )


def test_a_quiet_input_partition_stops_holding_time_windows_open() -> None:
    config = settings(kind="time", duration_s=10.0)
    config.streams.allowed_lateness_s = 0.0
    clock = Clock()
    evaluate = evaluator(config, clock)
    # Partition 1 reports event time 5 once, then its producer goes quiet. Partition 0 sends 100
    # records a second (the first 1000 are the reference).
    assert evaluate.apply(timed_fragment(1, 0, 6)) == []
    closed: list[model_mod.Judged] = []
    for second in range(0, 100, 10):
        clock.now = float(second)
        closed.extend(evaluate.apply(timed_fragment(0, second * 100, 1000, spacing_s=0.01)))
        if second < config.streams.idle_input_s:
            # Partition 1 still counts: the watermark stays at its event time 5.
            assert closed == [], second
    # Once partition 1 was idle for idle_input_s, partition 0's event time alone closes windows.
    assert len(closed) >= 5
    ends = sorted(judged.evaluation.window.last_record_index for judged in closed)
    assert ends == sorted(set(ends))  # each window once


def test_random_versions_evict_windows_and_free_their_detectors_within_the_cap() -> None:
    lines = stream()[:1_000]  # the reference (first_n = 1000)
    template = json.loads(stream()[0])
    for version in range(40):  # then 40 versions never seen before, one 20-record window each
        for i in range(20):
            index = 1_000 + version * 20 + i
            template.update(
                request_id=f"x{index}", timestamp=1_700_010_000 + index, model_version=f"junk-{version}"
            )
            lines.append(json.dumps(template).encode())
    clock = Clock()
    evaluate = evaluator(settings(size=20, max_open_windows=4), clock)
    judged = run(evaluate, fragment_batches(lines, 250), clock)
    assert len(judged) >= 40  # each version's window was judged: each had its detectors
    assert evaluate.engine.evicted_windows == 40 - 4
    assert evaluate.engine.suites <= 4  # one per key still open, never one per version ever seen

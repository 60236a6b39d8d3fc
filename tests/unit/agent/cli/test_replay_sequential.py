"""ADWIN on by default wherever labels flow, fed every label-joined record: `drift-agent replay`
pages at the record where the error rate's change is detected, not when a window closes, and an
agent that takes the model over mid-stream (state hand-over) alarms at the same record."""

from __future__ import annotations

import json
import pathlib

import msgspec
import numpy as np
import pytest

from agent import cli
from agent import settings as settings_mod
from agent.ingest import records
from agent.pipeline import engine as engine_mod

REFERENCE = 2_000
RECORDS = 9_000
CHANGE_AT = 6_000  # from here the model errs on 35% of the records instead of 10%
WINDOW = 1_000  # the default count window


def pairs(seed: int) -> list[tuple[dict[str, object], dict[str, object]]]:
    rng = np.random.default_rng(seed)
    out = []
    for index in range(-REFERENCE, RECORDS):
        label = int(rng.random() < 0.5)
        wrong = rng.random() < (0.35 if index >= CHANGE_AT else 0.10)
        timestamp = 1_700_000_000 + index * 0.01
        record = {
            "request_id": f"r{index}",
            "timestamp": timestamp,
            "model_name": "m",
            "model_version": "1",
            "features": {"x": float(rng.normal())},
            "prediction": float(1 - label if wrong else label),
        }
        out.append(
            (record, {"request_id": f"r{index}", "timestamp": timestamp + 0.001, "label": float(label)})
        )
    return out


def test_replay_pages_at_the_record_where_adwin_fires(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pairs(5)
    reference = [{**record, "label": label["label"]} for record, label in data[:REFERENCE]]
    stream = data[REFERENCE:]
    (tmp_path / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reference))
    (tmp_path / "stream.jsonl").write_text("".join(json.dumps(r) + "\n" for r, _ in stream))
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(label) + "\n" for _, label in stream))
    out = tmp_path / "events.jsonl"
    code = cli.main(
        [
            "replay",
            "--reference",
            str(tmp_path / "reference.jsonl"),
            "--stream",
            str(tmp_path / "stream.jsonl"),
            "--labels",
            str(tmp_path / "labels.jsonl"),
            "--events-out",
            str(out),
        ]
    )
    assert code == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    pages = [
        e for e in events if e["type"] == "decision" and e["severity"] in ("moderate", "severe", "critical")
    ]
    assert pages, "the error rate tripled and nothing paged"
    first = pages[0]
    # Inside the window the change falls in, at ADWIN's record, with the concept-drift incident.
    assert first["at_record"] is True and first["incidents"] == ["m/concept_drift/all"]
    assert CHANGE_AT <= first["record_index"] < CHANGE_AT + WINDOW - 1
    alarm = next(e for e in events if e["detector"] == "adwin" and e["at_record"])
    assert alarm["record_index"] == first["record_index"] and alarm["effect_size"] > 0.1
    # The summary it ends with says the same: the first page, where, why.
    said = capsys.readouterr().err.splitlines()
    assert (
        f"replay: first page at record {first['record_index']} (the record where a sequential test fired): "
        "moderate, rule concept-drift, incidents m/concept_drift/all, actions alert"
    ) in said
    # `drift-agent explain` says why that record paged: the rule, and that the alarm opened it at once.
    assert cli.main(["explain", str(out), str(first["record_index"])]) == 0
    explained = capsys.readouterr().out
    assert (
        f"record {first['record_index']} (alarm at this record): severity moderate, actions alert"
        in explained
    )
    assert (
        "m/concept_drift/all (rule concept-drift): opened at moderate after 1 drifted window in a row"
        in explained
    )
    windows = sum(1 for e in events if e["type"] == "decision" and not e["at_record"])
    assert any(line.startswith(f"replay: {windows} windows judged; decisions by severity: ") for line in said)


def _record(raw: dict[str, object]) -> records.PredictionRecord:
    return records.PredictionRecord(
        request_id=str(raw["request_id"]),
        timestamp=float(raw["timestamp"]),  # type: ignore[arg-type]
        model_name="m",
        model_version="1",
        features={"x": raw["features"]["x"]},  # type: ignore[index]
        prediction=float(raw["prediction"]),  # type: ignore[arg-type]
    )


def _alarms(engine: engine_mod.Engine, data: list[tuple[dict[str, object], dict[str, object]]]) -> list[int]:
    found = []
    for index, (raw, label) in enumerate(data):
        record = _record(raw)
        engine.add_prediction(record, index)
        for evaluation in engine.add_joined(record, float(label["label"]), index):  # type: ignore[arg-type]
            if evaluation.at_record:
                found.append(evaluation.window.last_record_index)
    return found


def test_a_takeover_mid_stream_alarms_at_the_same_record() -> None:
    data = pairs(9)
    reference = [_record(raw) for raw, _ in data[:REFERENCE]]
    stream = data[REFERENCE:]

    def engine() -> engine_mod.Engine:
        return engine_mod.build(
            settings_mod.AgentSettings(), decide=None, clock=lambda: 0.0, reference_records=reference
        )

    whole = _alarms(engine(), stream)
    assert whole and CHANGE_AT <= whole[0] < CHANGE_AT + WINDOW
    first = engine()
    cut = CHANGE_AT - 17  # not on ADWIN's check clock: values wait in its buffer
    before = _alarms(first, stream[:cut])
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()), type=engine_mod.EngineState)
    second = engine()
    second.restore(state)
    after = [cut + index for index in _alarms(second, stream[cut:])]
    assert before + after == whole

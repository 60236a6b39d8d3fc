"""`drift-agent replay` on streams with an injected pipeline break: each break is found by its
quality check and pages nobody but the data owner's route; none retrains or rolls back; genuine
drift on a clean feature in the same stream still retrains; a clean stream raises no quality
incident. Default settings and policy throughout."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from agent import cli

BREAK_AT = 3000
COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "PL")
Record = dict[str, Any]


def record(rng: np.random.Generator, index: int) -> Record:
    x = rng.normal(size=3)
    return {
        "request_id": f"r{index}",
        "timestamp": 1_700_000_000 + index * 0.01,
        "model_name": "m",
        "model_version": "1",
        "features": {
            "amount": round(50.0 + 10.0 * x[0], 3),
            "age": int(rng.integers(18, 90)),
            "country": COUNTRIES[int(rng.integers(0, len(COUNTRIES)))],
            "score": float(x[1]),
            "tenure": float(x[2]),
        },
        "prediction": float(x[1] > 0),
        "confidence": 0.7,
    }


def null_spike(i: int, r: Record) -> None:
    if i % 10 < 3:
        r["features"]["amount"] = None


def renamed(i: int, r: Record) -> None:
    r["features"]["amount_usd"] = r["features"].pop("amount")


def new_field(i: int, r: Record) -> None:
    r["features"]["channel"] = "web"


def unseen(i: int, r: Record) -> None:
    if i % 5 == 0:
        r["features"]["country"] = "ZZ"


def unit_change(i: int, r: Record) -> None:
    r["features"]["amount"] *= 1000


def out_of_range(i: int, r: Record) -> None:
    if i % 10 == 0:
        r["features"]["age"] = -5


def mistyped(i: int, r: Record) -> None:
    if i % 10 == 0:
        r["features"]["age"] = "unknown"


def duplicated(i: int, r: Record) -> None:
    r["request_id"] = f"r{i - i % 2}"


def genuine_drift(i: int, r: Record) -> None:
    r["features"]["score"] += 1.0
    r["features"]["tenure"] += 1.0


def replay(
    root: pathlib.Path, *breaks: Callable[[int, Record], None], length: int = 6000
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    reference = root / "reference.jsonl"
    reference.write_text("".join(json.dumps(record(rng, -1 - i)) + "\n" for i in range(3000)))
    lines = []
    for i in range(length):
        r = record(rng, i)
        if i >= BREAK_AT:
            for apply in breaks:
                apply(i, r)
        lines.append(json.dumps(r))
    stream = root / "stream.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    out = root / "events.jsonl"
    code = cli.main(
        ["replay", "--reference", str(reference), "--stream", str(stream), "--events-out", str(out)]
    )
    assert code == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def decisions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "decision"]


def planned(events: list[dict[str, Any]]) -> set[str]:
    return {a["kind"] for d in decisions(events) for a in d["actions"]}


def quality_incidents(events: list[dict[str, Any]]) -> set[str]:
    return {i for d in decisions(events) for i in d["incidents"] if "/quality/" in i}


def failed_checks(events: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {
        (e["detector"], e["feature"])
        for e in events
        if e["type"] == "result"
        and e["family"] == "quality"
        and e["drifted"]
        and e["statistic"] != "failed_checks"  # the check's window-level count, not a detail
    }


def test_a_clean_stream_raises_no_quality_incident(tmp_path: pathlib.Path) -> None:
    events = replay(tmp_path, length=10_000)
    assert failed_checks(events) == set()
    assert quality_incidents(events) == set()


@pytest.mark.parametrize(
    ("breaks", "checks", "incidents"),
    [
        (null_spike, {("missing_values", "amount")}, {"m/quality/amount"}),
        (renamed, {("schema", "amount"), ("schema", None)}, {"m/quality/amount", "m/quality/records"}),
        (new_field, {("schema", None)}, {"m/quality/records"}),
        (unseen, {("unseen_categories", "country")}, {"m/quality/country"}),
        (unit_change, {("out_of_range", "amount")}, {"m/quality/amount"}),
        (out_of_range, {("out_of_range", "age")}, {"m/quality/age"}),
        (mistyped, {("type_mismatch", "age")}, {"m/quality/age"}),
        (duplicated, {("duplicate_ids", None)}, {"m/quality/records"}),
    ],
    ids=[
        "null_spike",
        "renamed",
        "new_field",
        "unseen",
        "unit_change",
        "out_of_range",
        "mistyped",
        "duplicated",
    ],
)
def test_a_break_is_found_and_nothing_is_rolled_back_or_retrained(
    tmp_path: pathlib.Path,
    breaks: Callable[[int, Record], None],
    checks: set[tuple[str, str | None]],
    incidents: set[str],
) -> None:
    events = replay(tmp_path, breaks)
    assert failed_checks(events) == checks
    assert quality_incidents(events) == incidents
    # Found in the first window after the break (windows of 1000 records).
    first = min(d["record_index"] for d in decisions(events) if set(d["incidents"]) & incidents)
    assert BREAK_AT <= first < BREAK_AT + 1000
    assert planned(events) & {"retrain", "rollback"} == set()
    assert planned(events) & {"alert", "page"}


def test_drift_explained_by_a_unit_change_is_held_and_says_why(tmp_path: pathlib.Path) -> None:
    events = replay(tmp_path, unit_change)
    held = [h for d in decisions(events) for h in d["held"]]
    assert held, "the amount's drift should have planned a remediation, held back"
    assert {h["reason"] for h in held} == {"held: data quality incident m/quality/amount open"}
    explained = [d for d in decisions(events) if d["held"]]
    assert any("held: data quality incident m/quality/amount open" in line for line in explained[0]["why"])


def test_genuine_drift_on_clean_features_still_retrains_beside_a_break(tmp_path: pathlib.Path) -> None:
    events = replay(tmp_path, null_spike, genuine_drift)
    assert "m/quality/amount" in quality_incidents(events)
    retrains = [a for d in decisions(events) for a in d["actions"] if a["kind"] == "retrain"]
    assert [a["incident_id"] for a in retrains] == ["m/data_drift/all"]

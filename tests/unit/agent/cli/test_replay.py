"""`drift-agent replay`: the backtest contract (README, Commands), on files written by the test."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from agent import cli

CONTRACT_FIELDS = {
    "record_index",
    "detector",
    "feature",
    "score",
    "threshold",
    "drifted",
    "severity",
    "action",
}
SHIFT_AT = 6000


def record(rng: np.random.Generator, index: int, *, shifted: bool) -> dict[str, object]:
    x = rng.normal(size=4)
    if shifted:
        x[:2] += 1.0
    return {
        "request_id": f"r{index}",
        "timestamp": 1_700_000_000 + index * 0.01,
        "model_name": "m",
        "model_version": "1",
        "features": {"a": x[0], "b": x[1], "c": x[2], "d": x[3], "kind": "xyz"[index % 3]},
        "prediction": float(x[2] > 0),
        "confidence": 0.7,
        "latency_ms": 5.0 + rng.random(),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("replay")
    rng = np.random.default_rng(11)
    reference = root / "reference.jsonl"
    reference.write_text("".join(json.dumps(record(rng, i, shifted=False)) + "\n" for i in range(3000)))
    stream = root / "stream.jsonl"
    lines = [json.dumps(record(rng, i, shifted=i >= SHIFT_AT)) for i in range(10_000)]
    lines.insert(100, "{not json")  # index 100 is malformed: reported, not fatal
    stream.write_text("\n".join(lines) + "\n")
    return {"reference": reference, "stream": stream, "root": root}


def replay(files: dict[str, pathlib.Path], name: str) -> list[dict[str, object]]:
    out = files["root"] / name
    code = cli.main(
        [
            "replay",
            "--reference",
            str(files["reference"]),
            "--stream",
            str(files["stream"]),
            "--events-out",
            str(out),
        ]
    )
    assert code == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_events_follow_the_contract_and_are_deterministic(files: dict[str, pathlib.Path]) -> None:
    first = replay(files, "a.jsonl")
    second = replay(files, "b.jsonl")
    assert first == second
    assert first, "no events written"
    for event in first:
        assert set(event) >= CONTRACT_FIELDS, event
        assert isinstance(event["record_index"], int) and 0 <= event["record_index"] <= 10_000
        assert isinstance(event["drifted"], bool)


def test_drift_found_only_after_the_injection(files: dict[str, pathlib.Path]) -> None:
    events = replay(files, "c.jsonl")
    drifted_features = [
        e for e in events if e["detector"] == "data_drift" and e["feature"] is not None and e["drifted"]
    ]
    before = [e for e in drifted_features if int(str(e["record_index"])) < SHIFT_AT]
    after = {e["feature"] for e in drifted_features if int(str(e["record_index"])) >= SHIFT_AT + 1000}
    assert after >= {"a", "b"}
    # Stationary part: at most an occasional single-feature false alarm, never the shifted pair.
    assert len(before) <= 2
    decisions = [e for e in events if e["type"] == "decision" and e["severity"] != "none"]
    assert decisions and min(int(str(d["record_index"])) for d in decisions) >= SHIFT_AT


def test_malformed_record_reported_with_its_index(files: dict[str, pathlib.Path]) -> None:
    replay(files, "d.jsonl")
    rejected = (files["root"] / "d.jsonl.rejected.jsonl").read_text().splitlines()
    assert [json.loads(line)["record_index"] for line in rejected] == [100]
    assert json.loads(rejected[0])["reason"] == "malformed_json"


def test_output_does_not_depend_on_the_process_hash_seed(tmp_path: pathlib.Path) -> None:
    """Processes with different string-hash seeds write the same bytes (set order does not leak)."""
    rng = np.random.default_rng(5)
    shares = np.array([30, 20, 15, 10, 10, 8, 5, 2], dtype=float)

    def lines(n: int, start: int, skew: float) -> str:
        p = shares + skew * np.arange(len(shares))
        cities = rng.choice([f"city-{i}" for i in range(len(shares))], size=n, p=p / p.sum())
        return "".join(
            json.dumps(
                {**record(rng, start + i, shifted=False), "features": {"city": str(c), "x": float(i % 7)}}
            )
            + "\n"
            for i, c in enumerate(cities)
        )

    (tmp_path / "reference.jsonl").write_text(lines(3000, 0, 0.0))
    (tmp_path / "stream.jsonl").write_text(lines(4000, 3000, 1.5))
    outputs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"seed-{seed}.jsonl"
        subprocess.run(
            [sys.executable, "-m", "agent.cli", "replay", "--reference", str(tmp_path / "reference.jsonl"),
             "--stream", str(tmp_path / "stream.jsonl"), "--events-out", str(out)],
            check=True, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
        )  # fmt: skip
        outputs.append(out.read_bytes())
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]

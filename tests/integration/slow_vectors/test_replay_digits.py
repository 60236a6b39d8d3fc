"""`drift-agent replay` on records carrying a 64-dimension `embeddings` vector (scikit-learn's digits).

The whole pipeline with the default detectors and policy: the reference file's vectors fix the
dimension, stream records become the windows' vector rows, the default vector detectors judge
them and the policy decides. A stream in which one digit class grows from 10 % to 40 % opens an
incident and alerts, after the growth began; a stationary stream (other images, same distribution)
opens none. Seconds of replay per stream, so it lives with the slow tests.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agent import replay
from agent import settings as settings_mod
from tests.unit.detectors import digits as digits_mod

WINDOW = digits_mod.WINDOW_ROWS
STATIONARY_WINDOWS = 15
GROWTH_START = STATIONARY_WINDOWS * WINDOW
# The class grows from its 10 % to 40 % over 6 windows, then stays there for 6.
GROWTH_SHARES = [*np.linspace(0.1, 0.4, 6), *[0.4] * 6]


def line(index: int, image: npt.NDArray[np.float32], rng: np.random.Generator) -> str:
    record: dict[str, Any] = {
        "request_id": f"r{index}",
        "timestamp": 1_700_000_000 + index * 0.05,
        "model_name": "digits",
        "model_version": "1",
        # A scalar input that never moves and a prediction unrelated to the image: only the
        # embedding carries the change.
        "features": {"x": float(rng.normal())},
        "prediction": int(rng.integers(2)),
        "embeddings": {digits_mod.VECTOR: [float(v) for v in image]},
    }
    return json.dumps(record) + "\n"


def write(path: pathlib.Path, images: list[npt.NDArray[np.float32]], rng: np.random.Generator) -> None:
    path.write_text("".join(line(i, image, rng) for i, image in enumerate(images)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("replay_digits")
    data = digits_mod.digits()
    rng = np.random.default_rng(21)
    write(root / "reference.jsonl", list(data.images[data.reference_rows]), rng)
    stationary_rows = [data.window_rows(rng) for _ in range(STATIONARY_WINDOWS + len(GROWTH_SHARES))]
    write(root / "stationary.jsonl", [data.images[i] for rows in stationary_rows for i in rows], rng)
    growing_rows = stationary_rows[:STATIONARY_WINDOWS] + [
        data.window_rows(rng, share=float(share)) for share in GROWTH_SHARES
    ]
    write(root / "growing.jsonl", [data.images[i] for rows in growing_rows for i in rows], rng)
    return {"root": root}


def run(files: dict[str, pathlib.Path], stream: str) -> list[dict[str, Any]]:
    root = files["root"]
    events = root / f"{stream}.events.jsonl"
    settings = settings_mod.AgentSettings(window=settings_mod.WindowSettings(size=WINDOW))
    code = replay.run_replay(
        settings,
        reference_path=root / "reference.jsonl",
        stream=root / f"{stream}.jsonl",
        labels=None,
        events_out=events,
    )
    assert code == 0
    assert not events.with_name(events.name + ".rejected.jsonl").exists() or not (
        events.with_name(events.name + ".rejected.jsonl").read_text().strip()
    )
    return [json.loads(text) for text in events.read_text().splitlines()]


def test_a_growing_digit_class_opens_an_incident_and_alerts_after_it_began(
    files: dict[str, pathlib.Path],
) -> None:
    events = run(files, "growing")
    vector_results = [e for e in events if e["type"] == "result" and e["feature"] == digits_mod.VECTOR]
    assert {e["detector"] for e in vector_results} == {"vector_mmd", "vector_component_drift"}
    raised = [e for e in events if e["type"] == "decision" and e["severity"] != "none"]
    assert raised, "no incident opened on the growing class"
    assert min(e["record_index"] for e in raised) >= GROWTH_START
    alerts = [a for e in raised for a in e["actions"] if a["kind"] == "alert"]
    assert alerts and alerts[0]["incident_id"] == "digits/data_drift/all", [e["actions"] for e in raised]
    # The embedding carried it: in the window that opened the incident both vector detectors drifted.
    first = min(e["record_index"] for e in raised)
    at_first = {e["detector"] for e in vector_results if e["record_index"] == first and e["drifted"]}
    assert at_first == {"vector_mmd", "vector_component_drift"}


def test_a_stationary_stream_of_other_images_opens_nothing(files: dict[str, pathlib.Path]) -> None:
    events = run(files, "stationary")
    vector_results = [e for e in events if e["type"] == "result" and e["feature"] == digits_mod.VECTOR]
    windows = STATIONARY_WINDOWS + len(GROWTH_SHARES)
    assert len(vector_results) == 2 * windows
    raised = [e for e in events if e["type"] == "decision" and e["severity"] != "none"]
    assert raised == []
    # Single drifted windows may occur (MMD's test at p < 0.05); what the policy needs is persistence.
    drifted = [e for e in vector_results if e["drifted"]]
    print(f"stationary digits replay: {len(drifted)} of {len(vector_results)} vector verdicts drifted")
    assert len(drifted) <= 0.1 * len(vector_results)

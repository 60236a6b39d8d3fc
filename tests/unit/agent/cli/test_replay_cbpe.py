"""CBPE in `drift-agent replay`: accuracy estimated where no label comes, paged on a drop.

Two ways to give CBPE its realised baseline: a reference whose records carry their labels, or,
with a reference without labels, the first label-joined window (CBPE waits until then: one log
line naming the setting, no traceback).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import numpy as np
import pytest

from agent import cli

REFERENCE = 3_000
RECORDS = 14_000
LABELLED_UNTIL = 3_000  # labels arrive for the first records only, then stop (a delayed feed)
SHIFT_AT = 8_000  # record index in the stream
WINDOW = 1_000
CBPE = {"min_samples": 50, "min_chunks": 5, "confidence_kind": "predicted_class"}


def stream_record(
    rng: np.random.Generator, index: int, *, shifted: bool
) -> tuple[dict[str, object], dict[str, object]]:
    """A calibrated binary classifier: P(y=1 | x) = sigmoid(3 x); shifted, x crowds near 0."""
    x = rng.normal(scale=0.3 if shifted else 1.0)
    probability = 1.0 / (1.0 + np.exp(-3.0 * x))
    timestamp = 1_700_000_000 + index * 0.01
    record = {
        "request_id": f"r{index}",
        "timestamp": timestamp,
        "model_name": "m",
        "model_version": "1",
        "features": {"x": float(x), "noise": float(rng.normal())},
        "prediction": float(probability >= 0.5),
        "confidence": float(max(probability, 1.0 - probability)),
    }
    label = {
        "request_id": f"r{index}",
        "timestamp": timestamp + 0.001,
        "label": float(rng.random() < probability),
    }
    return record, label


@dataclasses.dataclass
class Replayed:
    events: list[dict[str, object]]
    log_lines: list[str]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def replay(root: pathlib.Path, *, labelled_reference: bool) -> Replayed:
    rng = np.random.default_rng(3)
    reference = []
    for i in range(REFERENCE):
        record, label = stream_record(rng, -1 - i, shifted=False)
        reference.append({**record, "label": label["label"]} if labelled_reference else record)
    pairs = [stream_record(rng, i, shifted=i >= SHIFT_AT) for i in range(RECORDS)]
    (root / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reference))
    (root / "stream.jsonl").write_text("".join(json.dumps(r) + "\n" for r, _ in pairs))
    arguments = ["--stream", str(root / "stream.jsonl"), "--events-out", str(root / "events.jsonl")]
    if not labelled_reference:
        (root / "labels.jsonl").write_text(
            "".join(json.dumps(label) + "\n" for _, label in pairs[:LABELLED_UNTIL])
        )
        arguments += ["--labels", str(root / "labels.jsonl")]
    (root / "agent.yaml").write_text(
        json.dumps({"window": {"size": WINDOW}, "detectors": {"detectors": {"cbpe": CBPE}}})
    )
    handler = _Capture()
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        code = cli.main(
            [
                "replay",
                "--config",
                str(root / "agent.yaml"),
                "--reference",
                str(root / "reference.jsonl"),
                *arguments,
            ]
        )
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
    assert code == 0
    events = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    return Replayed(events, handler.lines)


@pytest.fixture(scope="module", params=[False, True], ids=["labels-flow", "labelled-reference"])
def replayed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bool, Replayed]:
    labelled_reference = bool(request.param)
    return labelled_reference, replay(tmp_path_factory.mktemp("cbpe"), labelled_reference=labelled_reference)


def test_cbpe_starts_from_the_labelled_reference_or_waits_in_one_line(
    replayed: tuple[bool, Replayed],
) -> None:
    labelled_reference, run = replayed
    waiting = [line for line in run.log_lines if line.startswith("detectors.detectors.cbpe cannot start yet")]
    started = [line for line in run.log_lines if line.startswith("detectors.detectors.cbpe started")]
    if labelled_reference:
        assert waiting == [] and started == [], run.log_lines
    else:
        assert len(waiting) == 1 and "the reference needs labels" in waiting[0], run.log_lines
        assert len(started) == 1, run.log_lines


def test_cbpe_pages_on_an_estimated_accuracy_drop_without_labels(replayed: tuple[bool, Replayed]) -> None:
    labelled_reference, run = replayed
    estimates = [e for e in run.events if e["detector"] == "cbpe"]
    assert estimates, "cbpe never ran"
    first_ran = min(int(str(e["record_index"])) for e in estimates)
    # From the first window with a labelled reference; after the first labelled window without.
    assert first_ran == (WINDOW - 1 if labelled_reference else 2 * WINDOW - 1)
    # Every window after the shift is estimated below the band, with no label in sight.
    after = [e for e in estimates if int(str(e["record_index"])) >= SHIFT_AT + WINDOW]
    assert after and all(e["drifted"] for e in after)
    # The decision: the estimated drop pages (moderate or worse) after the shift, never before.
    pages = [
        int(str(e["record_index"]))
        for e in run.events
        if e["type"] == "decision" and e["severity"] in ("moderate", "severe", "critical")
    ]
    assert pages and SHIFT_AT <= min(pages) < SHIFT_AT + 3 * WINDOW

"""Replay holds label-join state only when it is given labels, bounded by the memory budget."""

from __future__ import annotations

import json
import pathlib

import pytest

from agent import replay
from agent import settings as settings_mod
from agent.ingest import parsing, records
from agent.pipeline import reference_files


def reference_of(rows: int) -> reference_files.LoadResult:
    made = [
        records.PredictionRecord(f"r{i}", 1.0 + i, "m", "1", {"x": float(i % 7), "y": float(i % 3)}, 0.5)
        for i in range(rows)
    ]
    return reference_files.LoadResult(made, rows=rows)


@pytest.mark.parametrize("with_labels", [False, True])
def test_the_join_exists_only_with_labels(with_labels: bool) -> None:
    settings = settings_mod.AgentSettings(memory=settings_mod.MemorySettings(budget_mib=64))
    pipeline = replay.ReplayPipeline(
        settings, parsing.RecordParser(), reference_of(200), replay.EventClock(), with_labels=with_labels
    )
    join = pipeline.worker.join
    if not with_labels:
        assert join is None
        return
    assert join is not None
    assert join.max_bytes == settings.memory.bytes_for("label_join")
    assert join.max_pending == settings.labels.max_pending


def test_replay_refuses_a_reference_over_the_budget(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wide = {f"f{i}": 0.5 for i in range(400)}
    line = {"timestamp": 1.0, "model_name": "m", "model_version": "1", "features": wide, "prediction": 1}
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps({**line, "request_id": f"r{i}"}) + "\n" for i in range(3000)))
    stream = tmp_path / "stream.jsonl"
    stream.write_text(json.dumps({**line, "request_id": "s"}) + "\n")
    settings = settings_mod.AgentSettings(memory=settings_mod.MemorySettings(budget_mib=16))
    code = replay.run_replay(
        settings, reference_path=reference, stream=stream, labels=None, events_out=tmp_path / "events.jsonl"
    )
    assert code == replay.EXIT_CONFIG
    assert "memory.budget_mib" in capsys.readouterr().err

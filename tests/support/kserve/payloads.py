"""Loading the recorded CloudEvents payloads (tests/support/kserve/payloads/*.json) as Kafka records."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from agent.ingest import source

PAYLOADS = pathlib.Path(__file__).resolve().parent / "payloads"


def load(name: str) -> tuple[tuple[tuple[str, bytes], ...], bytes]:
    """(headers, value) of one payload file, as a Kafka producer would send them."""
    spec: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    headers = tuple((str(key), str(value).encode("utf-8")) for key, value in spec["headers"])
    if "value_text" in spec:
        value = str(spec["value_text"]).encode("utf-8")
    else:
        value = json.dumps(spec["value"], separators=(",", ":")).encode("utf-8")
    return headers, value


def message(name: str, offset: int = 0, topic: str = "kserve-events") -> source.RawMessage:
    headers, value = load(name)
    return source.RawMessage(topic, 0, offset, value, 1_714_564_800_000 + offset, None, headers)

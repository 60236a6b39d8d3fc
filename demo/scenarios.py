"""The demo's scenarios in story order (a module of its own: the CLI lists them without the story)."""

from __future__ import annotations

SCENARIOS = (
    "data_drift",
    "embedding_drift",
    "bad_release",
    "concept_drift",
    "canary_latency",
    "override",
    "pipeline_break",
)

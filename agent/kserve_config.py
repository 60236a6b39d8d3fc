"""Settings group ``kserve``: reading KServe inference-logger CloudEvents instead of log records.

Kept apart from ``agent.kserve`` because ``agent.settings`` imports the group while
``agent.kserve`` imports ``agent.records``, which imports ``agent.settings``.
"""

from __future__ import annotations

import pydantic


class KServeSettings(pydantic.BaseModel):
    """Settings group ``kserve``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = pydantic.Field(
        False,
        description="Read the predictions topic as KServe inference-logger CloudEvents (request and "
        "response events joined by their id) instead of prediction-log records.",
    )
    feature_names: list[str] | None = pydantic.Field(
        None,
        description="Names of the columns of a 2-D input (V1 instances, or the one 2-D V2 input); "
        "null = f0, f1, ... (V1) and <input>_0, <input>_1, ... (V2). 1-D V2 inputs use their own names.",
    )
    model_name: str | None = pydantic.Field(
        None, description="Model name on the records; null = the event's inferenceservicename extension."
    )
    model_version: str | None = pydantic.Field(
        None,
        description="Version when the response does not carry one (V1 never does); null = the event's "
        "endpoint extension (default/canary), else 'unknown'.",
    )
    prediction_output: str | None = pydantic.Field(
        None, description="Name of the V2 output tensor holding the prediction; null = the first output."
    )
    ttl_s: float = pydantic.Field(
        60.0, gt=0, description="How long a request waits for its response (and back) before dead-lettering."
    )
    max_pending: int = pydantic.Field(
        100_000, ge=1, description="Most unjoined events held; beyond it the oldest are dead-lettered."
    )

    @pydantic.field_validator("feature_names")
    @classmethod
    def _distinct_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (len(set(names)) != len(names) or not all(names)):
            raise ValueError("feature_names must be distinct, non-empty names (one per column)")
        return names

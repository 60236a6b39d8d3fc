"""What the policy counts: detector results split into *units*.

A dataset-level result with per-feature ``details`` counts as its details, so rules match and
grade each feature on its own; any other result counts as itself. Rules (``schema``) match
units and judging (``judge``) counts them, hence a module of its own below both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from detectors import base as detectors_base


@dataclasses.dataclass(frozen=True)
class Unit:
    """One verdict the policy counts: a result, or one per-feature detail of a dataset-level one."""

    result: detectors_base.DetectorResult
    segment: Mapping[str, str] | None
    model_version: str | None


def units_of(results: Sequence[detectors_base.DetectorResult]) -> list[Unit]:
    units: list[Unit] = []
    for result in results:
        parts = result.details or (result,)
        for part in parts:
            units.append(
                Unit(
                    result=part,
                    segment=part.segment or result.segment,
                    model_version=part.model_version or result.model_version,
                )
            )
    return units

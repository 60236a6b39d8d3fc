"""Detectors by name: the suite, the settings and the CLI look detectors up here.

A registry is passed in (with ``default_registry()`` as the default), never a module global that
code mutates. An unknown name fails with the list of valid names; there is no fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pydantic

from detectors import base


class UnknownDetectorError(KeyError):
    """A detector name that is not registered. The message lists the valid names."""

    def __init__(self, name: str, valid: Iterable[str]) -> None:
        self.name = name
        self.valid = tuple(sorted(valid))
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown detector {self.name!r}; valid names: {', '.join(self.valid) or '(none registered)'}"


class DuplicateDetectorError(ValueError):
    """Two detector classes registered under one name."""


class DetectorConfigError(ValueError):
    """A config dict that the named detector's config class rejects; the message names the fields."""


class Registry:
    """Maps a detector name to its class; builds configured detectors from plain dicts."""

    def __init__(self, classes: Iterable[type[base.Detector[Any]]] = ()) -> None:
        self._classes: dict[str, type[base.Detector[Any]]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[base.Detector[Any]]) -> type[base.Detector[Any]]:
        """Add ``cls`` under ``cls.name``; usable as a class decorator on a private registry."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} has no class attribute 'name' (a non-empty str)")
        if name in self._classes:
            existing = self._classes[name]
            raise DuplicateDetectorError(
                f"detector name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; "
                f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
            )
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> type[base.Detector[Any]]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownDetectorError(name, self._classes) from None

    def create(self, name: str, config: Mapping[str, Any] | None = None) -> base.Detector[Any]:
        """A new detector ``name`` configured from ``config`` (validated by its config class)."""
        cls = self.get(name)
        try:
            parsed = cls.config_class.model_validate(dict(config or {}))
        except pydantic.ValidationError as exc:
            raise DetectorConfigError(_describe(name, exc)) from exc
        return cls(parsed)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._classes))

    def classes(self) -> tuple[type[base.Detector[Any]], ...]:
        return tuple(self._classes[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)


def _describe(name: str, error: pydantic.ValidationError) -> str:
    lines = [f"invalid config for detector {name!r}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"  {field}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def default_registry() -> Registry:
    """Every detector shipped with the agent, from an explicit list (no import-time side effects)."""
    # Imported here, not at the top: `import detectors.registry` stays cheap (torch loads only when
    # a registry is actually built).
    from detectors import data_drift  # noqa: PLC0415

    classes: list[type[base.Detector[Any]]] = [
        data_drift.DataDriftDetector,
        data_drift.PredictionDriftDetector,
    ]
    # --- Detectors of the second detectors engineer: one import above + entries here. ---
    from detectors import (  # noqa: PLC0415
        cbpe,
        concept,
        concept_streams,
        latency,
        multivariate,
        quality,
        vectors,
    )

    classes += [
        multivariate.MMDDetector,
        multivariate.DomainClassifierDetector,
        concept.PerformanceDetector,
        concept_streams.ADWINDetector,
        concept_streams.DDMDetector,
        concept_streams.PageHinkleyDetector,
        cbpe.CBPEDetector,
        latency.LatencyDetector,
        latency.ErrorRateDetector,
        *quality.CHECKS,
        *vectors.CLASSES,
    ]
    # --- end ---
    return Registry(classes)

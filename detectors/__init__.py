"""Pure drift computation: the Detector contract, the registry, and the shipped detectors.

Only light modules are imported here; ``detectors.registry.default_registry()`` loads the
detectors themselves (some import torch).
"""

from detectors.base import (
    CannotRun,
    ConformanceExample,
    Detector,
    DetectorConfig,
    DetectorFamily,
    DetectorResult,
    NeedsReference,
)
from detectors.registry import Registry, UnknownDetectorError, default_registry
from detectors.window import Window

__all__ = [
    "CannotRun",
    "ConformanceExample",
    "Detector",
    "DetectorConfig",
    "DetectorFamily",
    "DetectorResult",
    "NeedsReference",
    "Registry",
    "UnknownDetectorError",
    "Window",
    "default_registry",
]

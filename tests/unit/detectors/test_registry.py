from __future__ import annotations

from typing import Any, ClassVar

import pytest

from detectors import base, data_drift, registry
from detectors import window as window_mod


class _Constant(base.Detector[base.DetectorConfig]):
    name: ClassVar[str] = "data_drift"  # collides with the shipped detector on purpose
    family: ClassVar[base.DetectorFamily] = base.DetectorFamily.DATA_DRIFT
    config_class: ClassVar[type[base.DetectorConfig]] = base.DetectorConfig

    def update(self, window: window_mod.Window) -> base.DetectorResult:
        return base.DetectorResult(self.name, self.family, None, "constant", 0.0, 1.0, False)

    def reset(self) -> None:
        pass


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(registry.UnknownDetectorError) as error:
        registry.default_registry().create("data_drfit", {})
    assert "data_drift" in str(error.value) and "prediction_drift" in str(error.value)
    assert error.value.valid == registry.default_registry().names()


def test_duplicate_registration_is_an_error() -> None:
    reg = registry.default_registry()
    with pytest.raises(registry.DuplicateDetectorError, match="already registered"):
        reg.register(_Constant)


def test_create_validates_config_through_the_config_class() -> None:
    detector: Any = registry.default_registry().create("data_drift", {"drift_share": 0.25})
    assert isinstance(detector, data_drift.DataDriftDetector)
    assert detector.config.drift_share == 0.25
    with pytest.raises(registry.DetectorConfigError, match="drift_share"):
        registry.default_registry().create("data_drift", {"drift_share": 2})


def test_private_registry_holds_only_what_it_was_given() -> None:
    reg = registry.Registry([_Constant])
    assert reg.names() == ("data_drift",) and len(reg) == 1 and "data_drift" in reg
    assert isinstance(reg.create("data_drift"), _Constant)

"""An Evidently HTML drift report for one window (Evidently imported here only: ~10 s, ~300 MB)."""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pandas as pd

from detectors import window as window_mod

log = logging.getLogger(__name__)


def to_frame(window: window_mod.Window) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {name: np.asarray(values) for name, values in window.features.items()}
    if window.predictions is not None:
        columns["prediction"] = np.asarray(window.predictions)
    return pd.DataFrame(columns)


def write(window: window_mod.Window, reference: object, path: pathlib.Path) -> pathlib.Path | None:
    if not isinstance(reference, window_mod.Window):
        return None
    try:
        from evidently import Report  # noqa: PLC0415
        from evidently.presets import DataDriftPreset  # noqa: PLC0415
    except ImportError as exc:  # evidently is a dev extra; the demo still tells its story without it
        log.warning("evidently not installed (%s); skipping the HTML report", exc)
        return None
    snapshot = Report([DataDriftPreset()]).run(to_frame(window), to_frame(reference))
    snapshot.save_html(str(path))
    return path

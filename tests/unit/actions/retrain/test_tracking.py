"""Tracker's pyfunc packaging, loaded back with no tracking server (that one: tests/integration/mlflow)."""

from __future__ import annotations

import pathlib

import mlflow.pyfunc
import pandas as pd
import pytest

from actions.retrain import tracking, trainer
from tests.support.retrain import samples


def test_packaged_pyfunc_loads_without_pickles_and_names_missing_features(tmp_path: pathlib.Path) -> None:
    data = samples.binary(80)
    fitted = trainer.train(data, samples.FAST_TRAINER).model
    fitted.save(tmp_path / "m")
    tracking.package_pyfunc(tmp_path / "m", tmp_path / "pyfunc")
    assert not list((tmp_path / "pyfunc").rglob("*.pkl"))
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    frame = pd.DataFrame({name: list(column) for name, column in data.features.items()})
    assert list(loaded.predict(frame)) == list(fitted.predict(data.features))
    with pytest.raises(Exception, match="colour"):
        loaded.predict(frame.drop(columns=["colour"]))

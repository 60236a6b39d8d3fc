"""MLflow models-from-code entry for the built-in model: MLflow runs this file when it loads one.

``tracking.package_pyfunc`` logs it beside the model directory (artifact ``model_dir``), so a
retrained model loads with ``mlflow.pyfunc.load_model`` and nothing is unpickled. Serving it
needs this package installed (it is in the model's requirements).
"""

from __future__ import annotations

import pathlib
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import model as pyfunc_model

from actions.retrain import dataset, model


class TabularPyfunc(pyfunc_model.PythonModel):
    """Predicts class labels (classification) or values (regression) from a feature DataFrame."""

    def load_context(self, context: Any) -> None:
        self._model = model.TabularModel.load(pathlib.Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        # A missing column is left out so the model's own error names it.
        features = {
            name: _column(model_input[name].to_numpy())
            for name in self._model.preprocessor.feature_names
            if name in model_input.columns
        }
        return self._model.predict(features)


def _column(values: np.ndarray) -> dataset.Column:
    if values.dtype == object:
        return np.array([None if v is None else str(v) for v in values], dtype=object)
    return values.astype(np.float64)


mlflow.models.set_model(TabularPyfunc())

"""The built-in tabular model: preprocessing stored with a small MLP, saved as one directory.

A model directory holds ``model.json`` (task, classes, layer sizes, and the preprocessing: each
numeric feature's mean and standard deviation, each categorical feature's vocabulary) and
``weights.pt`` (the MLP's state dict, loaded with ``weights_only=True``: no pickled code runs).
Everything needed to turn raw feature columns into predictions travels together, so the
serving side and the gates cannot disagree about the preprocessing.

Missing numbers become the mean (0 after standardisation); missing or unseen categories become
an all-zero one-hot block.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from actions.retrain import dataset

FloatArray = npt.NDArray[np.float64]
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
FORMAT_VERSION = 1


class Task(enum.StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class ModelError(ValueError):
    """A model directory or input that cannot be used; the message says what and how to fix it."""


label_key = dataset.label_key


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    name: str
    mean: float
    std: float


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(feature.categories) for feature in self.categorical)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.numeric] + [f.name for f in self.categorical]

    @classmethod
    def fit(cls, features: Mapping[str, dataset.Column], *, max_categories: int) -> Preprocessor:
        numeric: list[NumericFeature] = []
        categorical: list[CategoricalFeature] = []
        for name in sorted(features):
            column = features[name]
            if column.dtype == object:
                values, counts = np.unique([str(v) for v in column if v is not None], return_counts=True)
                # Most frequent first, ties by name: the same data gives the same vocabulary.
                order = sorted(
                    zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0])
                )
                categorical.append(CategoricalFeature(name, tuple(v for v, _ in order[:max_categories])))
            else:
                finite = column[np.isfinite(column)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                numeric.append(NumericFeature(name, mean, std if std > 1e-12 else 1.0))
        return cls(tuple(numeric), tuple(categorical))

    def transform(self, features: Mapping[str, dataset.Column]) -> FloatArray:
        missing = [name for name in self.feature_names if name not in features]
        if missing:
            raise ModelError(
                f"features {missing} are missing: the model was trained on {self.feature_names}; "
                "send every trained feature (values may be null)"
            )
        size = len(features[self.feature_names[0]]) if self.feature_names else 0
        blocks: list[FloatArray] = []
        for feature in self.numeric:
            column = np.asarray(features[feature.name])
            if column.dtype == object:
                column = np.array([_as_float(v) for v in column], dtype=np.float64)
            scaled = (column.astype(np.float64) - feature.mean) / feature.std
            blocks.append(np.where(np.isfinite(scaled), scaled, 0.0).reshape(size, 1))
        for cat in self.categorical:
            index = {category: i for i, category in enumerate(cat.categories)}
            one_hot = np.zeros((size, len(cat.categories)))
            for row, value in enumerate(features[cat.name]):
                position = index.get(str(value)) if value is not None else None
                if position is not None:
                    one_hot[row, position] = 1.0
            blocks.append(one_hot)
        return np.hstack(blocks) if blocks else np.zeros((size, 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": [dataclasses.asdict(f) for f in self.numeric],
            "categorical": [{"name": f.name, "categories": list(f.categories)} for f in self.categorical],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessor:
        return cls(
            tuple(NumericFeature(str(f["name"]), float(f["mean"]), float(f["std"])) for f in data["numeric"]),
            tuple(
                CategoricalFeature(str(f["name"]), tuple(str(c) for c in f["categories"]))
                for f in data["categorical"]
            ),
        )


def _as_float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def build_network(input_width: int, hidden_sizes: Sequence[int], output_width: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = input_width
    for hidden in hidden_sizes:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, output_width))
    return torch.nn.Sequential(*layers)


@dataclasses.dataclass
class TabularModel:
    """Preprocessing + MLP. ``classes`` is empty for regression; targets are standardised there."""

    task: Task
    preprocessor: Preprocessor
    hidden_sizes: tuple[int, ...]
    network: torch.nn.Sequential
    classes: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0
    positive_class: str | None = None  # binary: the class whose probability is the score

    @property
    def output_width(self) -> int:
        return 1 if self.task is Task.REGRESSION else len(self.classes)

    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def encode(self, features: Mapping[str, dataset.Column]) -> torch.Tensor:
        matrix = self.preprocessor.transform(features)
        return torch.as_tensor(matrix, dtype=torch.float32, device=self.device())

    def raw_output(self, features: Mapping[str, dataset.Column]) -> torch.Tensor:
        self.network.eval()
        with torch.no_grad():
            output: torch.Tensor = self.network(self.encode(features))
        return output

    def predict(self, features: Mapping[str, dataset.Column]) -> dataset.Column:
        """Class labels (object array of str) or regression values (float64)."""
        output = self.raw_output(features).cpu()
        if self.task is Task.REGRESSION:
            return output[:, 0].double().numpy() * self.target_std + self.target_mean
        picked = output.argmax(dim=1).numpy()
        return np.array([self.classes[i] for i in picked], dtype=object)

    def probabilities(self, features: Mapping[str, dataset.Column]) -> FloatArray | None:
        """Rows of class probabilities in ``classes`` order; None for regression."""
        if self.task is Task.REGRESSION:
            return None
        probabilities: FloatArray = torch.softmax(self.raw_output(features), dim=1).cpu().double().numpy()
        return probabilities

    def scores(self, features: Mapping[str, dataset.Column]) -> FloatArray | None:
        """Binary: probability of ``positive_class`` (for AUC); None otherwise."""
        probabilities = self.probabilities(features)
        if self.task is not Task.BINARY or probabilities is None or self.positive_class is None:
            return None
        column: FloatArray = probabilities[:, self.classes.index(self.positive_class)]
        return column

    # -- storage ---------------------------------------------------------------------------------

    def save(self, directory: pathlib.Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format_version": FORMAT_VERSION,
            "task": self.task.value,
            "classes": list(self.classes),
            "positive_class": self.positive_class,
            "hidden_sizes": list(self.hidden_sizes),
            "input_width": self.preprocessor.width,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "preprocessing": self.preprocessor.to_json(),
        }
        (directory / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8"
        )
        state = {key: value.detach().cpu() for key, value in self.network.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: pathlib.Path, *, device: str | torch.device = "cpu") -> TabularModel:
        metadata_path = directory / METADATA_FILE
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"{metadata_path} is not a drift-agent model ({exc}); a model directory holds "
                f"{METADATA_FILE} and {WEIGHTS_FILE}"
            ) from exc
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{metadata_path}: format_version {metadata.get('format_version')!r} is not {FORMAT_VERSION}"
            )
        preprocessor = Preprocessor.from_json(metadata["preprocessing"])
        task = Task(metadata["task"])
        classes = tuple(str(c) for c in metadata["classes"])
        hidden = tuple(int(h) for h in metadata["hidden_sizes"])
        network = build_network(preprocessor.width, hidden, 1 if task is Task.REGRESSION else len(classes))
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        positive = metadata.get("positive_class")
        return cls(
            task=task,
            preprocessor=preprocessor,
            hidden_sizes=hidden,
            network=network.to(device),
            classes=classes,
            target_mean=float(metadata["target_mean"]),
            target_std=float(metadata["target_std"]),
            positive_class=None if positive is None else str(positive),
        )


def is_model_dir(directory: pathlib.Path) -> bool:
    return (directory / METADATA_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


class Predictor(Protocol):
    """What the gates need from a candidate or a baseline: predictions (and binary scores)."""

    def predict(self, features: Mapping[str, dataset.Column]) -> dataset.Column: ...

    def scores(self, features: Mapping[str, dataset.Column]) -> FloatArray | None: ...


class PyfuncPredictor:
    """A user's MLflow pyfunc model directory: predictions only (no scores, so no AUC on it)."""

    def __init__(self, directory: pathlib.Path) -> None:
        import mlflow.pyfunc  # noqa: PLC0415 - seconds to import; only user-trained models need it

        self._model = mlflow.pyfunc.load_model(str(directory))

    def predict(self, features: Mapping[str, dataset.Column]) -> dataset.Column:
        import pandas as pd  # noqa: PLC0415

        output = self._model.predict(pd.DataFrame({name: list(column) for name, column in features.items()}))
        values = np.asarray(output).reshape(-1)
        if values.dtype.kind in "fiub":
            return values.astype(np.float64)
        return np.array([str(value) for value in values], dtype=object)

    def scores(self, features: Mapping[str, dataset.Column]) -> FloatArray | None:
        return None


def load_predictor(directory: pathlib.Path, *, device: str | torch.device = "cpu") -> Predictor:
    """A drift-agent model directory, or an MLflow pyfunc model directory (it has an MLmodel file)."""
    if is_model_dir(directory):
        return TabularModel.load(directory, device=device)
    if (directory / "MLmodel").is_file():
        return PyfuncPredictor(directory)
    raise ModelError(
        f"{directory} holds no model: expected {METADATA_FILE} + {WEIGHTS_FILE} (the built-in format) "
        "or an MLflow pyfunc model (an MLmodel file)"
    )

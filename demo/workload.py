"""A simulated serving workload: seeded traffic, real torch models, drift injected on a schedule.

Traffic is a binary classification task over six numeric and two categorical features. The true
decision boundary can move (concept drift) and the inputs can shift (data drift) at known record
indices, so the demo and its test know exactly when each event starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

NUMERIC = ("x0", "x1", "x2", "x3", "x4", "x5")
REGIONS = ("eu", "us", "apac")
DEVICES = ("mobile", "desktop")
# True boundary weights; concept drift turns them towards the direction of CONCEPT_TARGET.
BASE_WEIGHTS = np.array([1.2, -0.8, 0.6, 0.0, 0.9, 0.0])  # x3, x5 carry no signal
CONCEPT_TARGET = np.array([-0.9, 0.3, 0.6, 1.1, -0.4, -0.5])


@dataclasses.dataclass(frozen=True)
class DataShift:
    """From record ``start`` on, add ``shift`` (in standard deviations) to the named features."""

    start: int
    features: tuple[str, ...]
    shift: float


@dataclasses.dataclass(frozen=True)
class ConceptDrift:
    """Between ``start`` and ``start + ramp`` records the true boundary turns by ``degrees``
    towards CONCEPT_TARGET, then stays there.

    The turn keeps the weights' length, so the task stays as hard as before: a model retrained on
    the new concept can be as accurate as the old one was on the old concept. (Blending the two
    weight vectors instead would shorten them and make every model worse, retrained or not.)
    """

    start: int
    ramp: int
    degrees: float = 25.0


@dataclasses.dataclass(frozen=True)
class NullBreak:
    """From record ``start`` on, an upstream job sends null for the named features in ``share`` of
    the requests (a broken pipeline: the truth behind them is unchanged)."""

    start: int
    features: tuple[str, ...]
    share: float


# Dimension of the request embedding the upstream encoder gives each request.
EMBEDDING_DIM = 16
EMBEDDING = "request_embedding"


@dataclasses.dataclass(frozen=True)
class Encoder:
    """The upstream encoder that embeds each request (as a text or image model's encoder would):
    a fixed random projection of the raw inputs through tanh, ``EMBEDDING_DIM`` numbers.

    It belongs to the upstream service, not to the served model, so every model version sees the
    same embedding, and a retrain does not change it. ``version`` 2 is an upgrade whose projection
    moved (``upgrade_shift`` of the way to another random one): the embeddings of the same
    requests change while their scalar features do not.
    """

    version: int = 1
    upgrade_shift: float = 0.6

    def embed(self, numeric: np.ndarray) -> np.ndarray:
        """Rows of float32 embeddings for rows of (imputed) numeric inputs."""
        projection = _projection(1)
        if self.version != 1:
            projection = (1 - self.upgrade_shift) * projection + self.upgrade_shift * _projection(
                self.version
            )
        embedded: np.ndarray = np.tanh(numeric @ projection).astype(np.float32)
        return embedded


def _projection(seed: int) -> np.ndarray:
    """The encoder's projection (inputs x EMBEDDING_DIM), fixed per seed."""
    weights: np.ndarray = np.random.default_rng(1000 + seed).normal(
        scale=1 / math.sqrt(len(NUMERIC)), size=(len(NUMERIC), EMBEDDING_DIM)
    )
    return weights


@dataclasses.dataclass(frozen=True)
class Schedule:
    data_shifts: tuple[DataShift, ...] = ()
    concept: ConceptDrift | None = None
    null_breaks: tuple[NullBreak, ...] = ()
    encoder: Encoder = Encoder()


class TabularMLP(torch.nn.Module):
    """The served model: a small MLP over the one-hot encoded features."""

    def __init__(self, n_inputs: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x)).squeeze(-1)


def encode(numeric: np.ndarray, regions: Sequence[str], devices: Sequence[str]) -> torch.Tensor:
    """Numeric features plus one-hot categories, as the model sees them."""
    region_hot = np.array([[r == name for name in REGIONS] for r in regions], dtype=np.float32)
    device_hot = np.array([[d == name for name in DEVICES] for d in devices], dtype=np.float32)
    return torch.from_numpy(np.hstack([numeric.astype(np.float32), region_hot, device_hot]))


def true_weights(schedule: Schedule, indices: np.ndarray) -> np.ndarray:
    """The true boundary for each record index, one row per index."""
    concept = schedule.concept
    if concept is None:
        return np.tile(BASE_WEIGHTS, (len(indices), 1))
    progress = np.clip((indices - concept.start) / max(1, concept.ramp), 0.0, 1.0)
    angles = np.radians(concept.degrees) * progress
    length = float(np.linalg.norm(BASE_WEIGHTS))
    along = BASE_WEIGHTS / length
    # The unit vector orthogonal to BASE_WEIGHTS in the plane it spans with CONCEPT_TARGET.
    across = CONCEPT_TARGET - (CONCEPT_TARGET @ along) * along
    across = across / np.linalg.norm(across)
    weights: np.ndarray = length * (np.cos(angles)[:, None] * along + np.sin(angles)[:, None] * across)
    return weights


def sample(
    rng: np.random.Generator, schedule: Schedule, start: int, count: int
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """``count`` rows of traffic beginning at record ``start``: features and true labels.

    A feature an upstream break nulled is NaN (the server imputes it and logs null)."""
    numeric = rng.normal(size=(count, len(NUMERIC)))
    indices = np.arange(start, start + count)
    for shift in schedule.data_shifts:
        active = indices >= shift.start
        for name in shift.features:
            numeric[active, NUMERIC.index(name)] += shift.shift
    regions = [REGIONS[i] for i in rng.choice(len(REGIONS), size=count, p=[0.5, 0.3, 0.2])]
    devices = [DEVICES[i] for i in rng.choice(len(DEVICES), size=count, p=[0.6, 0.4])]
    logits = np.einsum("ij,ij->i", numeric, true_weights(schedule, indices))
    labels = (rng.random(count) < 1 / (1 + np.exp(-2.5 * logits))).astype(np.int64)
    for broken in schedule.null_breaks:  # after the labels: the world did not change, the feed did
        nulled = (indices >= broken.start) & (rng.random(count) < broken.share)
        for name in broken.features:
            numeric[nulled, NUMERIC.index(name)] = np.nan
    return numeric, regions, devices, labels


def train_model(
    seed: int, schedule: Schedule, *, start: int = 0, rows: int = 4000, epochs: int = 60
) -> TabularMLP:
    """Train a served model on traffic as it looks at record ``start`` (seeded, CPU, ~1 s)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    numeric, regions, devices, labels = sample(rng, schedule, start, rows)
    inputs = encode(numeric, regions, devices)
    targets = torch.from_numpy(labels.astype(np.float32))
    model = TabularMLP(inputs.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    loss_fn = torch.nn.BCELoss()
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimiser.step()
    model.eval()
    return model


def accuracy(
    model: TabularMLP, numeric: np.ndarray, regions: Sequence[str], devices: Sequence[str], labels: np.ndarray
) -> float:
    with torch.no_grad():
        predicted = (model(encode(numeric, regions, devices)).numpy() >= 0.5).astype(np.int64)
    return float(np.mean(predicted == labels))


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))

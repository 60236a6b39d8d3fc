"""Real vectors for the vector-drift tests: scikit-learn's digits (1797 images of 8 x 8 pixels, 64 dims).

The images are split once, at random, into a reference pool and a stream pool with no image in
both. A stationary window is a fresh sample of the stream pool (the same distribution as the
reference, other images); a drifted window over-represents one digit class. No image appears twice
in a window: a duplicate in two cross-validation folds would let a domain classifier score it by
memory, which is not drift.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits

from detectors import window as window_mod

VECTOR = "digit"
# The class whose share grows (about 10 % of the images, as every class).
GROWING_CLASS = 3
WINDOW_ROWS = 200


@dataclasses.dataclass(frozen=True)
class Digits:
    images: npt.NDArray[np.float32]  # rows x 64
    classes: npt.NDArray[np.int64]
    reference_rows: npt.NDArray[np.int64]
    stream_rows: npt.NDArray[np.int64]

    def reference(self) -> window_mod.Window:
        return vector_window(self.images[self.reference_rows])

    def window_rows(
        self, rng: np.random.Generator, size: int = WINDOW_ROWS, share: float | None = None
    ) -> npt.NDArray[np.int64]:
        """Stream-pool rows, distinct; with ``share``, that share of them from ``GROWING_CLASS``."""
        if share is None:
            return rng.choice(self.stream_rows, size, replace=False)
        grown = self.stream_rows[self.classes[self.stream_rows] == GROWING_CLASS]
        others = self.stream_rows[self.classes[self.stream_rows] != GROWING_CLASS]
        count = round(share * size)
        rows = np.concatenate(
            (rng.choice(grown, count, replace=False), rng.choice(others, size - count, replace=False))
        )
        return rng.permutation(rows)

    def window(
        self, rng: np.random.Generator, size: int = WINDOW_ROWS, share: float | None = None
    ) -> window_mod.Window:
        return vector_window(self.images[self.window_rows(rng, size, share)])


def vector_window(images: npt.NDArray[np.float32]) -> window_mod.Window:
    return window_mod.Window(features={}, vectors={VECTOR: images})


@functools.cache
def digits(seed: int = 0) -> Digits:
    images, classes = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(images))
    half = len(images) // 2
    return Digits(
        images.astype(np.float32), classes.astype(np.int64), np.sort(order[:half]), np.sort(order[half:])
    )

"""How far apart two samples of the reference's own distribution keep by chance.

``detectors.stattests`` never judges its default Jensen-Shannon test below this distance: on a
long-tailed categorical Evidently's fixed 0.1 sits below it, and every stationary window drifts.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]

DRAWS = 400
QUANTILE = 0.99


def jensenshannon(reference_counts: FloatArray, current_size: int) -> float:
    """The Jensen-Shannon distance two samples of these sizes from the reference's own shares
    exceed by chance in 1 % of draws (a seeded parametric bootstrap of the no-drift case).

    Values the reference never had turn up in a long tail's samples too: the current sample
    draws them with the Good-Turing share (the reference's values seen once), each counted
    where the reference has nothing.
    """
    # The distance does not depend on the order of the values: every window of one reference and
    # size shares the answer (a 300-value bootstrap takes about 20 ms).
    present = tuple(sorted(float(c) for c in reference_counts if c > 0))
    return _jensenshannon(present, current_size)


@functools.lru_cache(maxsize=1024)
def _jensenshannon(present: tuple[float, ...], current_size: int) -> float:
    reference_counts = np.asarray(present, dtype=np.float64)
    reference_size = int(reference_counts.sum())
    shares = reference_counts / reference_size
    novelty = float(np.count_nonzero(reference_counts == 1)) / reference_size
    rng = np.random.default_rng(0)
    ref = rng.multinomial(reference_size, shares, size=DRAWS).astype(np.float64)
    cur = rng.multinomial(current_size, [*(shares * (1.0 - novelty)), novelty], size=DRAWS)
    p = ref / reference_size
    q = cur[:, :-1].astype(np.float64) / current_size
    m = (p + q) / 2.0
    js = np.sum(special.rel_entr(p, m), axis=1) + np.sum(special.rel_entr(q, m), axis=1)
    # A value only the current sample has: q * ln(q / (q / 2)) = q ln 2, and nothing on p's side.
    js += cur[:, -1] / current_size * math.log(2.0)
    return float(np.quantile(np.sqrt(js / 2.0), QUANTILE))

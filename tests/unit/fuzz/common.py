"""What the fuzz tests share: JSON strategies, and the checks every parsed record must pass.

``json_values`` covers what ``json.dumps`` can write and the agent's decoders may meet: nested
objects and arrays, integers beyond 64 bits and beyond float64, NaN / Infinity (written as the
tokens the standard library accepts), subnormals, strings with lone surrogates and long strings.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Collection
from typing import Any, Final

import hypothesis
import numpy as np
from hypothesis import strategies as st

from agent.ingest import records

MAX_FLOAT: Final = sys.float_info.max

# Bounded, reproducible runs: a fixed seed per test, no example database written into the tree.
FUZZ: Final = hypothesis.settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.data_too_large,
        hypothesis.HealthCheck.large_base_example,
    ],
)

# Characters of any category, lone surrogates (U+D800..U+DFFF) included.
_CHARS: Final = st.characters() | st.characters(categories=["Cs"])
# Strings a decoder treats specially, offered as they are (random text meets them too rarely).
_SPECIAL_TEXTS: Final = [
    "",
    "\ud800",
    "a\udfff",
    "\ud83d\ude00",
    "\u00e9",
    "\x00",
    "\u2028",
    "\ufeff{}",
    "NaN",
    "-Infinity",
    "1e999",
    "null",
    "[]",
    "{",
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00",
    "0001-01-01T00:00:00+23:59",
]
texts: Final = st.text(_CHARS, max_size=12) | st.sampled_from(_SPECIAL_TEXTS)
# Long strings are few (they cost time), but long enough to matter to a decoder.
long_texts: Final = st.integers(min_value=1_000, max_value=20_000).map(lambda n: "\u00e9" * n)

_SPECIAL_NUMBERS: Final[list[int | float]] = [
    0,
    -0.0,
    5e-324,
    1e-320,
    MAX_FLOAT,
    -MAX_FLOAT,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**308,
    10**309,  # an integer beyond float64
    -(10**400),
    float("nan"),
    float("inf"),
    float("-inf"),
    1e11,
    1e12,
]

numbers: Final = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.sampled_from(_SPECIAL_NUMBERS),
)

json_scalars: Final = st.one_of(st.none(), st.booleans(), numbers, texts)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)


json_values: Final = st.recursive(json_scalars, _containers, max_leaves=12)
# The same, with a long string now and then.
json_values_long: Final = st.recursive(json_scalars | long_texts, _containers, max_leaves=8)


def dumps(value: Any, *, ensure_ascii: bool = True) -> bytes:
    """JSON bytes as the standard library writes them: NaN / Infinity tokens, lone surrogates
    escaped (``"\\ud800"``) or, with ``ensure_ascii=False``, written raw (invalid UTF-8)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", "surrogatepass")


def is_finite_number(value: object) -> bool:
    """An int or float within float64 (exact for ints of any size; False for NaN and infinities)."""
    return isinstance(value, int | float) and -MAX_FLOAT <= value <= MAX_FLOAT


# -- what an outcome must satisfy -----------------------------------------------------------------


def check_rejected(result: records.Rejected, reasons: Collection[str] = records.REJECT_REASONS) -> None:
    assert result.reason in reasons, result
    assert result.detail, result
    assert isinstance(result.raw, bytes), result


def is_unicode(text: str) -> bool:
    """True when UTF-8 can encode ``text`` (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_prediction(result: object, reasons: Collection[str] = records.REJECT_REASONS) -> None:
    """A ``Rejected`` with a known reason, or a record that keeps the contract (``records``)."""
    if isinstance(result, records.Rejected):
        check_rejected(result, reasons)
        return
    assert isinstance(result, records.PredictionRecord), result
    assert type(result.timestamp) is float, result
    assert math.isfinite(result.timestamp), result
    assert 0.0 <= result.timestamp < records.MAX_EPOCH_SECONDS, result
    for text in (result.request_id, result.model_name, result.model_version):
        assert isinstance(text, str), result
        assert text, result
    # Every text of an accepted record encodes (alerts, /metrics and the audit log must encode it).
    assert is_unicode(repr(result.features) + repr(result.segment) + str(result.prediction)), result
    assert all(is_unicode(text) for text in (result.request_id, result.model_name, result.model_version))
    for name, value in result.features.items():
        assert isinstance(name, str), result
        if value is None or isinstance(value, str | bool):
            continue
        assert is_finite_number(value), (name, value)
    assert isinstance(result.prediction, str) or is_finite_number(result.prediction), result
    if result.confidence is not None:
        assert 0.0 <= result.confidence <= 1.0, result
    if result.probabilities is not None:
        assert result.probabilities, result
        assert all(0.0 <= p <= 1.0 for p in result.probabilities.values()), result
    for latency in (result.latency_ms, result.gpu_latency_ms):
        if latency is not None:
            assert is_finite_number(latency), result
            assert latency >= 0.0, result
    assert result.status in ("ok", "error"), result
    if result.segment is not None:
        assert all(isinstance(v, str) for v in result.segment.values()), result
    if result.embeddings is not None:
        # Vectors: non-empty, whole float32 components, every one finite; names unlike the features'.
        assert result.embeddings, result
        assert set(result.embeddings).isdisjoint(result.features), result
        for name, vector in result.embeddings.items():
            assert is_unicode(name), result
            assert isinstance(vector, bytes) and vector and len(vector) % 4 == 0, result
            assert np.isfinite(np.frombuffer(vector, dtype="<f4")).all(), result


def check_label(result: object) -> None:
    if isinstance(result, records.Rejected):
        check_rejected(result)
        return
    assert isinstance(result, records.LabelRecord), result
    assert isinstance(result.request_id, str), result
    assert result.request_id, result
    assert type(result.timestamp) is float, result
    assert math.isfinite(result.timestamp), result
    assert 0.0 <= result.timestamp < records.MAX_EPOCH_SECONDS, result
    assert isinstance(result.label, str) or is_finite_number(result.label), result

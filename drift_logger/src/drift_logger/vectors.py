"""numpy arrays and torch tensors in a record: held by reference on the request thread, turned
into JSON lists on the sender thread.

A 768-dimension embedding costs ~10 us to turn into a Python list and a few hundred us to write
as JSON; neither belongs on the thread that serves the request. The request thread only checks the
shape (a few attribute reads) and keeps a reference: the array itself, or ``tensor.detach()``
(a new view of the same storage, without the autograd graph). The sender thread converts it to
CPU float32, the agent's own representation, and writes it as a JSON list of numbers. So the
caller must not modify an array in place after logging it, unless the logger was created with
``copy_vectors=True``.

numpy and torch stay optional: a value is recognised as an array only through modules already
in ``sys.modules`` (the caller's array proves its library is loaded), never by importing one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Final

# Feature values that need no look at all on the request path (the common case stays cheap).
PLAIN_TYPES: Final = frozenset({float, int, str, bool, type(None)})
# numpy dtype kinds that are numbers: bool, signed and unsigned integers, floats.
_NUMERIC_KINDS: Final = frozenset("biuf")


class VectorShapeError(ValueError):
    """An array that is not a 1-D vector of numbers (told at ``log()`` time, with the fix)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceTensor:
    """A CUDA tensor and the stream the request thread was on when it was logged.

    The sender thread copies it to the host on that stream, so the copy runs after the kernels
    that produced it even when the server computes on a stream other than the default one.
    """

    tensor: Any
    stream: Any


def hold(field: str, name: str, value: Any, *, copy: bool, scalar_allowed: bool) -> Any:
    """What a record keeps for a value that is not a plain JSON scalar (request thread).

    numpy scalars and 0-d arrays become plain numbers here (``item()`` on the host is cheap);
    a 0-d tensor is held like a vector, since ``item()`` on a CUDA tensor would wait for the GPU.
    Anything else that is not an array (lists, unknown types) is left as it is: the sender
    writes lists as they are, and counts what it cannot serialise as ``dropped_invalid``.
    """
    numpy: Any = sys.modules.get("numpy")
    # A tuple, not ``numpy.ndarray | numpy.generic``, which would build a union on every call.
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return _hold_numpy(field, name, value, copy=copy, scalar_allowed=scalar_allowed)
    torch: Any = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _hold_tensor(torch, field, name, value, copy=copy, scalar_allowed=scalar_allowed)
    if not scalar_allowed and not isinstance(value, list | tuple):
        raise VectorShapeError(_not_a_vector(field, name, f"a {type(value).__name__}"))
    return value


def _hold_numpy(field: str, name: str, value: Any, *, copy: bool, scalar_allowed: bool) -> Any:
    if value.ndim == 0:  # a numpy scalar, or a 0-d array
        if not scalar_allowed:
            raise VectorShapeError(_not_a_vector(field, name, f"a numpy scalar ({value.dtype})"))
        return value.item()
    if value.ndim != 1 or not value.shape[0]:
        _refuse_shape(field, name, value.shape, scalar_allowed, f"numpy array of dtype {value.dtype}")
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise VectorShapeError(
            f"{field}.{name} is a numpy array of dtype {value.dtype}; a vector must hold "
            "numbers (bool, int or float)"
        )
    return value.astype("<f4") if copy else value


def _hold_tensor(torch: Any, field: str, name: str, value: Any, *, copy: bool, scalar_allowed: bool) -> Any:
    if value.ndim != 0:
        if value.ndim != 1 or not value.shape[0]:
            what = f"torch tensor of dtype {value.dtype}"
            _refuse_shape(field, name, tuple(value.shape), scalar_allowed, what)
        if value.is_complex():
            raise VectorShapeError(f"{field}.{name} is a complex tensor; a vector must hold real numbers")
    elif not scalar_allowed:
        raise VectorShapeError(_not_a_vector(field, name, "a 0-d torch tensor"))
    held = value.detach()
    if copy:
        held = held.to(dtype=torch.float32, copy=True) if held.ndim else held.clone()
    if held.is_cuda:
        return DeviceTensor(held, torch.cuda.current_stream(held.device))
    return held


def encode_record(record: dict[str, Any]) -> str:
    """A queued record as JSON text (sender thread).

    A vector is written as a JSON list of its float32 values (a float64 array is rounded to
    float32 here, as the agent stores it), each as text that reads back as exactly that float32:
    by orjson when installed (the shortest such text; ~20 us for 768 values), else with 9
    significant digits (``%.9g``: 0.1 is written 0.100000001), still ~2x faster than
    ``json.dumps`` on a list of floats and ~30% shorter.
    """
    features = record.get("features") or {}
    if not (any(map(_is_held_array, features.values())) or "embeddings" in record):
        return json.dumps(record, separators=_JSON_SEPARATORS, default=to_json)
    rest = {key: value for key, value in record.items() if key not in _VECTOR_FIELDS}
    parts = [json.dumps(rest, separators=_JSON_SEPARATORS, default=to_json)[:-1], ',"features":']
    parts.append(_object_text(features))
    if "embeddings" in record:
        parts += [',"embeddings":', _object_text(record["embeddings"])]
    parts.append("}")
    return "".join(parts)


def to_json(value: Any) -> Any:
    """A held scalar as a JSON value (``json.dumps``'s ``default``): 0-d tensors, numpy scalars."""
    if hasattr(value, "tolist"):  # numpy scalars, 0-d tensors, other array libraries' values
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable; log plain numbers and strings")


_JSON_SEPARATORS: Final = (",", ":")
_VECTOR_FIELDS: Final = frozenset({"features", "embeddings"})
# json.dumps writes non-finite floats so (the agent refuses them, with a reason, in its DLQ).
_NON_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _is_held_array(value: Any) -> bool:
    if type(value) in PLAIN_TYPES:
        return False
    return type(value) is DeviceTensor or getattr(value, "ndim", 0) == 1


def _object_text(values: dict[str, Any]) -> str:
    scalars = {name: value for name, value in values.items() if not _is_held_array(value)}
    text = json.dumps(scalars, separators=_JSON_SEPARATORS, default=to_json)
    arrays = [
        f"{json.dumps(name)}:{_vector_text(value)}" for name, value in values.items() if name not in scalars
    ]
    if not arrays:
        return text
    return text[:-1] + ("," if scalars else "") + ",".join(arrays) + "}"


def _fast_json() -> Any:
    """orjson when installed (the ``fast`` extra), imported on the sender thread at its first
    vector, so importing the logger still loads only the standard library; else None."""
    global _orjson_module  # noqa: PLW0603 - resolved once, on first use
    if _orjson_module is _UNRESOLVED:
        try:
            import orjson  # noqa: PLC0415

            _orjson_module = orjson
        except ImportError:
            _orjson_module = None
    return _orjson_module


_UNRESOLVED: Final = object()
_orjson_module: Any = _UNRESOLVED


def _vector_text(value: Any) -> str:
    host = _float32_array(value)
    _orjson = _fast_json()
    if _orjson is not None and bool(host.size) and bool(sys.modules["numpy"].isfinite(host).all()):
        # orjson writes a float32 array natively, each value the shortest text that reads back as
        # that float32: ~20 us for 768 values against ~300 us below (it writes NaN as null, so
        # a vector with one goes the slow way, where the agent refuses it as non-finite).
        text: str = _orjson.dumps(host, option=_orjson.OPT_SERIALIZE_NUMPY).decode()
        return text
    numbers: list[float] = host.tolist()
    text = ",".join(map("%.9g".__mod__, numbers))
    if "n" in text:  # nan or inf: a finite number in %g has digits, ".", "-", "+" and "e" only
        text = ",".join(_NON_FINITE.get(number, number) for number in text.split(","))
    return f"[{text}]"


def _float32_array(value: Any) -> Any:
    """The vector as a float32 numpy array on the host (copied there if need be)."""
    if type(value) is DeviceTensor:
        torch: Any = sys.modules["torch"]
        with torch.cuda.stream(value.stream):  # ordered after the kernels that produced it
            value = value.tensor.to("cpu")
    numpy: Any = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return numpy.ascontiguousarray(value, dtype="<f4")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        # Through numpy (loaded whenever torch is): its tolist, and orjson, read numpy arrays.
        return value.to(device="cpu", dtype=torch.float32).contiguous().numpy()
    raise TypeError(f"cannot write a {type(value).__name__} as a vector; log numpy arrays, tensors or lists")


def _refuse_shape(field: str, name: str, shape: tuple[int, ...], scalar_allowed: bool, what: str) -> None:
    # Called only for a wrong shape, so the message is built off the common path.
    if len(shape) != 1:
        fix = (
            f"log {name}[0] for a batch of one row"
            if len(shape) == 2 and shape[0] == 1  # a (1, dim) model output
            else "log one 1-D vector per request (reshape(-1) to flatten)"
        )
        kind = "a value or a 1-D vector" if scalar_allowed else "a 1-D vector"
        raise VectorShapeError(f"{field}.{name} is a {what} of shape {shape}; it must be {kind}: {fix}")
    if shape[0] == 0:
        raise VectorShapeError(f"{field}.{name} is an empty vector; log at least one number")


def _not_a_vector(field: str, name: str, what: str) -> str:
    return (
        f"{field}.{name} is {what}; an embedding must be a 1-D vector "
        "(numpy array, tensor or list of numbers)"
    )

"""The full checks of prediction and label fields, one field each, with the messages they give.

``parsing.RecordParser`` checks the usual types inline and calls these for anything else: each
returns the accepted value (converted where the contract in ``agent.ingest.records`` allows) or
raises ``FieldError`` naming the field, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from agent.ingest import records

# Python ints are unbounded; a larger one would overflow float64 when the window is built.
MAX_FLOAT: Final = 1.7976931348623157e308
_SHOWN_CHARS: Final = 60


class FieldError(Exception):
    """Raised by a check and turned into ``records.Rejected`` at the parser's boundary.

    An exception keeps the valid-record path free of result plumbing; it costs only on bad data.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def show(value: object) -> str:
    """``repr(value)``, cut short for a message."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


_TYPE_NAMES: Final[dict[type, str]] = {
    type(None): "null",
    bool: "bool",
    int: "number",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


def type_name(value: object) -> str:
    """The JSON name of a value's type, as a producer would say it."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def is_number(value: object) -> bool:
    """An int or a float, and not a bool (JSON's true is no number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: float) -> bool:
    # Exact for ints of any size too (int/float comparison never overflows); False for NaN.
    return -MAX_FLOAT <= value <= MAX_FLOAT


class FieldChecks:
    """The checks of one field mapping: messages name each field by the path it is read from."""

    def __init__(self, shown: Mapping[str, str], features_path: str) -> None:
        # Contract name -> how a message names it: "'path'", or "'path' (name)" when they differ.
        self._shown = shown
        self._features_path = features_path

    def _missing(self, name: str) -> FieldError:
        return FieldError(
            records.MISSING_FIELD,
            f"field {self._shown[name]}: missing or null; it is required "
            f"(set mapping.{name} if the producer writes it under another path)",
        )

    def _expected(
        self, name: str, expected: str, value: object, reason: str = records.WRONG_TYPE
    ) -> FieldError:
        return FieldError(reason, f"field {self._shown[name]}: expected {expected}, got {show(value)}")

    def non_empty_string(self, name: str, value: object) -> str:
        if value is None:
            raise self._missing(name)
        if not isinstance(value, str):
            raise self._expected(name, "a non-empty string", value)
        if not value:
            raise self._expected(name, "a non-empty string", value, records.INVALID_VALUE)
        return value

    def model_version(self, value: object) -> str:
        if is_number(value) and isinstance(value, int):
            return str(value)
        return self.non_empty_string("model_version", value)

    def timestamp(self, value: object) -> float:
        expected = "epoch seconds (a number) or an RFC 3339 string such as '2024-05-01T12:00:00Z'"
        if value is None:
            raise self._missing("timestamp")
        if isinstance(value, str):
            try:
                seconds = records.parse_rfc3339(value)
            except (ValueError, OverflowError):
                raise self._expected(
                    "timestamp", f"{expected} with a UTC offset", value, records.INVALID_VALUE
                ) from None
        elif is_number(value):
            assert isinstance(value, int | float)
            if not is_finite(value):
                raise self._expected("timestamp", "finite epoch seconds", value, records.NON_FINITE)
            seconds = float(value)
        else:
            raise self._expected("timestamp", expected, value)
        if not 0.0 <= seconds < records.MAX_EPOCH_SECONDS:
            hint = " (milliseconds? divide by 1000)" if seconds >= records.MAX_EPOCH_SECONDS else ""
            raise self._expected(
                "timestamp", f"a time between 1970 and the year 5138{hint}", value, records.INVALID_VALUE
            )
        return seconds

    def features_object(self, value: object) -> dict[str, Any]:
        if value is None:
            raise self._missing("features")
        if isinstance(value, Mapping):  # a non-dict mapping from an adapter
            return dict(value)
        raise self._expected("features", "an object of name -> number | string | bool | null", value)

    def bad_feature(self, features: dict[str, Any]) -> NoReturn:
        # The hot loop (``RecordParser._features``) skips names to stay fast; find the offending
        # one again here.
        for name, value in features.items():
            if type(value) in (str, bool, type(None), list, tuple):
                continue  # vectors are checked apart (``vectors.split``)
            if type(value) in (int, float) and is_finite(value):
                continue
            raise self._feature_error(name, value)
        raise AssertionError("bad_feature called without a bad feature")

    def _feature_error(self, feature: str, value: object) -> FieldError:
        field = f"'{self._features_path}.{feature}'"
        if type(value) in (int, float):
            return FieldError(
                records.NON_FINITE, f"field {field}: expected a finite number, got {show(value)}"
            )
        # Subclasses (numpy scalars from an adapter) land here too: plain JSON types only.
        return FieldError(
            records.WRONG_TYPE,
            f"field {field}: expected a number, string, bool or null, or a list of numbers (a vector), "
            f"got {type_name(value)} {show(value)}",
        )

    def prediction(self, value: object) -> float | str:
        if value is None:
            raise self._missing("prediction")
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, int | float):
            if not is_finite(value):
                raise self._expected("prediction", "a finite number or a string", value, records.NON_FINITE)
            return value
        if isinstance(value, str):
            return value
        raise self._expected("prediction", "a number or a string", value)

    def confidence(
        self, probabilities: object, confidence: object
    ) -> tuple[dict[str, float] | None, float | None]:
        if confidence is None and type(probabilities) is dict and probabilities:
            # Fast path (float probabilities, no explicit confidence): check and take the max in
            # one pass; anything unusual falls through to the general checks below.
            top = -1.0
            for probability in probabilities.values():
                if type(probability) is not float or not 0.0 <= probability <= 1.0:
                    break
                if probability > top:  # noqa: PLR1730 - max() is a call, slower here
                    top = probability
            else:
                return probabilities, top
        checked = self._probabilities(probabilities) if probabilities is not None else None
        if confidence is not None:
            return checked, self._unit_interval("confidence", confidence)
        # Without an explicit confidence, the predicted class is the most probable one.
        return checked, float(max(checked.values())) if checked else None

    def _probabilities(self, value: object) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise self._expected("probabilities", "an object of class -> probability in [0, 1]", value)
        if not value:
            raise self._expected(
                "probabilities", "at least one class -> probability", value, records.INVALID_VALUE
            )
        for label, probability in value.items():
            kind = type(probability)
            if (kind is float or kind is int) and 0.0 <= probability <= 1.0:
                continue
            name = f"probabilities.{label}"
            if not is_number(probability):
                raise FieldError(
                    records.WRONG_TYPE,
                    f"field '{name}': expected a number in [0, 1], got {show(probability)}",
                )
            reason = records.NON_FINITE if not is_finite(probability) else records.INVALID_VALUE
            raise FieldError(reason, f"field '{name}': expected a number in [0, 1], got {show(probability)}")
        return value if type(value) is dict else dict(value)

    def _unit_interval(self, name: str, value: object) -> float:
        if not is_number(value):
            raise self._expected(name, "a number in [0, 1]", value)
        assert isinstance(value, int | float)
        if not is_finite(value):
            raise self._expected(name, "a finite number in [0, 1]", value, records.NON_FINITE)
        number = float(value)
        if not 0.0 <= number <= 1.0:
            raise self._expected(name, "a number in [0, 1]", value, records.INVALID_VALUE)
        return number

    def non_negative(self, name: str, value: object) -> float:
        expected = "a finite number >= 0"
        if not is_number(value):
            raise self._expected(name, expected, value)
        assert isinstance(value, int | float)
        if not is_finite(value):
            raise self._expected(name, expected, value, records.NON_FINITE)
        number = float(value)
        if number < 0.0:
            raise self._expected(name, expected, value, records.INVALID_VALUE)
        return number

    def status(self, value: object) -> str:
        if not isinstance(value, str):
            raise self._expected("status", "'ok' or 'error'", value)
        raise self._expected("status", "'ok' or 'error'", value, records.INVALID_VALUE)

    def segment(self, value: object) -> None:
        if not isinstance(value, Mapping):
            raise self._expected("segment", "an object of attribute -> string", value)
        for attribute, item in value.items():
            if not isinstance(item, str):
                raise FieldError(
                    records.WRONG_TYPE, f"field 'segment.{attribute}': expected a string, got {show(item)}"
                )

    def label(self, value: object) -> float | str:
        if value is None:
            raise self._missing("label")
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            if not is_finite(value):
                raise self._expected("label", "a finite number or a string", value, records.NON_FINITE)
            return value
        raise self._expected("label", "a number, string or bool", value)

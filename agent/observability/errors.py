"""An exception as one short phrase for logs and readiness reasons, its type named once."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """``Type: message``; kafka-python's errors already start their text with the type name."""
    name = type(exc).__name__
    text = str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"

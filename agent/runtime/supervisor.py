"""Starts and stops every background part of the agent by name, in order.

Parts start in the order they are added and stop in the reverse order, so a part never outlives
what it depends on. Each start and stop is logged with the part's name; a stop that raises is
logged and does not keep the others from stopping.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    start: Callable[[], object]
    stop: Callable[[], object]


def _nothing() -> None:
    return None


class Supervisor:
    def __init__(self) -> None:
        self._parts: list[Part] = []
        self._started: list[Part] = []

    def add(
        self, name: str, *, start: Callable[[], object] = _nothing, stop: Callable[[], object] = _nothing
    ) -> None:
        if any(part.name == name for part in self._parts):
            raise ValueError(f"a part named {name!r} is already supervised")
        self._parts.append(Part(name, start, stop))

    @property
    def names(self) -> list[str]:
        return [part.name for part in self._parts]

    @property
    def started(self) -> list[str]:
        return [part.name for part in self._started]

    def start_all(self) -> None:
        for part in self._parts:
            log.debug("starting %s", part.name)
            part.start()
            self._started.append(part)

    def stop_all(self) -> None:
        while self._started:
            part = self._started.pop()
            log.debug("stopping %s", part.name)
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed; stopping the others", part.name)

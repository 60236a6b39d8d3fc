"""Helpers of the logger tests: a producer factory held shut, a step clock, reading records back."""

from __future__ import annotations

import json
import threading
from typing import Any

import drift_logger
from agent.ingest import parsing, records
from demo import broker
from tests.infra import kafka as kafka_infra


class GatedFactory:
    """A real ``kafka.KafkaProducer`` factory that waits for ``open()`` before it connects.

    While it waits, the sender thread is stuck "in the network": anything the request path
    does meanwhile demonstrably does not depend on the network. It remembers which threads
    called it, so a test can check that only the sender thread ever did.
    """

    def __init__(self, bootstrap_servers: str, **overrides: Any) -> None:
        self._make = drift_logger.kafka_producer_factory(
            bootstrap_servers, linger_ms=5, overrides={"bootstrap_timeout_ms": 500, **overrides}
        )
        self._gate = threading.Event()
        self.entered = threading.Event()
        self.callers: list[threading.Thread] = []

    @property
    def is_open(self) -> bool:
        return self._gate.is_set()

    def open(self) -> None:
        self._gate.set()

    def __call__(self) -> drift_logger.Producer:
        self.callers.append(threading.current_thread())
        self.entered.set()
        if not self._gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return self._make()


class StepClock:
    """A clock that moves ``step`` seconds each time it is read (exact latencies in tests)."""

    def __init__(self, start: float = 100.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now


def queued_records(logger: drift_logger.PredictionLogger) -> list[dict[str, Any]]:
    """The records the request path left in the buffer, as the sender thread will take them.

    Reads the logger's private buffer on purpose: it shows what the request thread did (and
    did not) do to a record before the sender thread ever touched it.
    """
    sender = logger._sender
    with sender.lock:
        items = list(sender._buffer)
    return [item[0] if type(item) is tuple else item for item in items]


def closed_address() -> str:
    """host:port where nothing listens (free a moment ago)."""
    return f"127.0.0.1:{broker.free_port()}"


def read_records(bootstrap_servers: str, topic: str, count: int) -> list[tuple[dict[str, Any], bytes | None]]:
    """The raw JSON objects and keys on ``topic`` (asserts each passes the agent's parser too)."""
    parser = parsing.RecordParser()
    found = []
    for message in kafka_infra.read_topic(bootstrap_servers, topic, count):
        parsed = parser.parse_prediction(message.value)
        assert isinstance(parsed, records.PredictionRecord), parsed
        found.append((json.loads(message.value), message.key))
    return found

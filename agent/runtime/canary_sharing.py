"""A canary seen by every agent: windows and state shared through Kafka.

A canary runs on the executor (the Lease holder), but a model's windows close at its evaluator,
which may be another agent. So:

- ``WindowPublisher`` (evaluator side) sends each closed prediction window to
  ``<prefix>.windows`` while the model serves more than one version (only then can a canary be
  running: the split puts the candidate beside the stable version), keyed by model.
- ``window_follower`` (every agent) reads that topic from its end and hands each window to the
  canary feed, which ticks the canary on the Lease holder only. A new leader has the latest
  windows already; a restarted pod gets the next ones.
- ``TableCanaryStore`` keeps the canary's state in the compacted ``<prefix>.canary`` topic, keyed
  by model: a pod replaced mid-canary (the rollback replaces pods) resumes where it stood. The
  state is read again whenever this agent (re)gains the Lease, and cached while it holds it
  (only the Lease holder writes).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable

import kafka
import msgspec

from actions.canary import state as canary_state
from agent import settings as settings_mod
from agent.ingest import connection
from agent.pipeline import window_codec
from agent.runtime import table, topic_follower
from detectors import window as window_mod

log = logging.getLogger(__name__)

# Closed windows remembered per model to tell whether it serves more than one version.
RECENT_WINDOWS = 8


class SharedWindow(msgspec.Struct, array_like=True, gc=False):
    """A closed window on the windows topic: a prediction window (every record) or a label-joined
    one (the records whose labels arrived), which the canary's performance check reads."""

    labelled: bool
    window: window_codec.WindowData


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(SharedWindow)


def encode_window(window: window_mod.Window, *, labelled: bool = False) -> bytes:
    return _ENCODER.encode(SharedWindow(labelled, window_codec.encode(window)))


def decode_window(raw: bytes) -> tuple[window_mod.Window, bool]:
    """The window and whether it is label-joined."""
    shared = _DECODER.decode(raw)
    return window_codec.decode(shared.window), shared.labelled


class WindowPublisher:
    """Sends a model's closed prediction windows to the windows topic while it serves two versions."""

    def __init__(self, producer: kafka.KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._recent: dict[str, collections.deque[str]] = {}
        self.published = 0

    def publish(self, model: str, window: window_mod.Window, *, labelled: bool) -> bool:
        """Send ``window`` when ``model`` had windows of another version lately; True if sent.

        Label-joined windows go too: the canary's performance check is judged on them.
        """
        if window.model_version is None:
            return False
        recent = self._recent.setdefault(model, collections.deque(maxlen=RECENT_WINDOWS))
        if not labelled:  # which versions serve is told by the prediction windows
            recent.append(window.model_version)
        if len(set(recent)) < 2:
            return False
        # Best effort, not acked before the input commits: a lost window is followed by the next.
        value = encode_window(window, labelled=labelled)
        self._producer.send(self._topic, key=model.encode("utf-8"), value=value, partition=0)
        self.published += 1
        return True


def window_follower(
    kafka_settings: settings_mod.KafkaSettings,
    topic: str,
    on_window: Callable[[str, window_mod.Window, bool], None],
) -> topic_follower.TopicFollower:
    """A thread that reads the windows topic from its end and hands each window on (with whether
    it is label-joined)."""

    def on_message(key: bytes, value: bytes) -> None:
        try:
            window, labelled = decode_window(value)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning(
                "canary windows: skipped a window this agent cannot decode (%s); the canary is judged "
                "on the others. Agents of different versions in one group cause this: roll them to one",
                exc,
            )
            return
        on_window(key.decode("utf-8", "replace"), window, labelled)

    return topic_follower.TopicFollower(kafka_settings, topic, on_message, name="canary-windows")


class TableCanaryStore:
    """One model's canary state in the compacted canary topic (``canary_state.StateStore``)."""

    def __init__(
        self,
        kafka_settings: settings_mod.KafkaSettings,
        topic: str,
        model: str,
        *,
        is_leader: Callable[[], bool],
    ) -> None:
        self._settings = kafka_settings
        self._topic = topic
        self._key = model.encode("utf-8")
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self._table: table.CompactedTable | None = None
        self._producer: kafka.KafkaProducer | None = None
        self._cached: canary_state.CanaryState | None = None
        self._fresh = False  # the cache holds what the topic holds (true while leading)

    def load(self) -> canary_state.CanaryState | None:
        with self._lock:
            leading = self._is_leader()
            if not (leading and self._fresh):
                values = table.latest(self._open().read([0]))
                raw = values.get(self._key)
                where = f"{self._topic} key {self._key.decode()}"
                self._cached = (
                    canary_state.CanaryState.from_json(json.loads(raw), where) if raw is not None else None
                )
                self._fresh = leading
            return self._cached

    def save(self, state: canary_state.CanaryState) -> None:
        value = json.dumps(state.to_json(), sort_keys=True).encode("utf-8")
        with self._lock:
            store = self._open()
            store.put(self._key, value, 0)
            store.flush()  # durable before the controller acts on it
            self._cached = state

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
                self._table = None

    def _open(self) -> table.CompactedTable:
        if self._table is None:
            self._producer = kafka.KafkaProducer(**connection.connection_config(self._settings), acks="all")
            self._table = table.CompactedTable(self._settings, self._topic, self._producer)
        return self._table

"""Stage 3: decided actions in, side effects out, each exactly once.

The agents' consumer group covers ``<prefix>.actions`` (one partition): its owner is the only
executor. With leader election on, the owner also campaigns for the Kubernetes Lease and acts
only while it holds it (``is_leader`` is checked right before each side effect); the Lease
follows the partition, so the two never disagree for longer than a rebalance.

The executor's journal lives in ``<prefix>.journal``; the owner reads it when it gets the
partition. A request counts as done once its outcome is journaled and what follows from it (a
canary after a retrain, a page when a remediation gives up) is on the actions topic; offsets are
committed up to the first request not yet done. An owner that loses the partition or its Lease
leaves the rest uncommitted: the next one starts there, and the journal turns a repeat into a
no-op.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

import kafka

from actions import base
from agent.ingest import source
from agent.respond import executor as executor_mod
from agent.respond import idempotency
from agent.runtime import leader

log = logging.getLogger(__name__)

# The executor's lanes hold 256 each: stop reading while this many are in hand (a long retrain
# holds its lane), so none is ever dropped for a full queue.
MAX_IN_HAND = 128
COMMIT_INTERVAL_S = 0.5
# How often requests still in progress (a rollout, a canary) are handed back to their handler.
RESUBMIT_INTERVAL_S = 2.0


def encode_request(request: base.ActionRequest) -> bytes:
    return json.dumps(idempotency.request_to_json(request), sort_keys=True).encode("utf-8")


class ActStage:
    def __init__(
        self,
        *,
        actions_topic: str,
        producer: kafka.KafkaProducer,
        elector: leader.Elector,
        load_journal: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = frozenset({actions_topic})
        self._topic = actions_topic
        self._producer = producer
        self._elector = elector
        self._load_journal = load_journal
        self._clock = clock
        self.executor: executor_mod.Executor | None = None
        self._lock = threading.Lock()
        # Offsets handed to the executor, in order, and those done (the actions topic has one partition).
        self._in_hand: list[int] = []
        self._done: set[int] = set()
        self._waiting: dict[str, list[int]] = {}
        self._messages: dict[int, source.RawMessage] = {}
        self._owned = False
        self._paused = False
        self._last_commit = clock()
        self._last_resubmit = clock()
        self.follow_ups: list[Callable[[executor_mod.Executed], base.ActionRequest | None]] = []
        self.executed = 0

    def attach(self, executor: executor_mod.Executor) -> None:
        self.executor = executor

    @property
    def owner(self) -> bool:
        return self._owned

    # -- ownership -----------------------------------------------------------------------------

    def assigned(self, partitions: Sequence[source.Partition], consumer: source.Source | None = None) -> None:
        partition = source.Partition(self._topic, 0)
        if partition not in partitions:
            return
        assert self.executor is not None, "attach(executor) before the first poll"
        self._owned = True
        if consumer is not None:
            # Read again from the commit: requests taken before a rebalance and not yet done
            # were cleared from hand (kafka-python keeps the fetch position of a partition given
            # back to the same agent); the journal turns a repeat into a no-op.
            committed = consumer.committed(partition)
            if committed is not None:
                consumer.seek(partition, committed)
        # Read the journal now: the previous owner may have finished requests whose offsets it
        # never committed; their outcomes are journaled (flushed before an offset counts as done),
        # so a repeat becomes a no-op.
        loaded = self._load_journal()
        log.info("owning %s: journal read (%d keys); campaigning for the lease", self._topic, loaded)
        self._elector.run()
        # Begun and not finished (or still in progress) under the last owner: confirm or finish.
        self.executor.resubmit_pending()

    def revoked(self, partitions: Sequence[source.Partition]) -> None:
        if not any(p.topic == self._topic for p in partitions):
            return
        log.info("%s moved to another agent: no longer executing", self._topic)
        self._owned = False
        self._paused = False
        self._elector.stop(release=True)
        with self._lock:
            self._in_hand.clear()
            self._done.clear()
            self._waiting.clear()
            self._messages.clear()

    # -- requests in ---------------------------------------------------------------------------

    def produce(self, request: base.ActionRequest) -> None:
        """A request that follows from an outcome: durable on the actions topic before the parent
        counts as done."""
        key = request.model_name.encode("utf-8")
        self._producer.send(self._topic, key=key, value=encode_request(request), partition=0)

    def handle(self, message: source.RawMessage) -> None:
        assert self.executor is not None
        try:
            request = idempotency.request_from_json(json.loads(message.value))
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "action request at offset %d cannot be read (%s); skipped, no action taken. Agents of "
                "different versions in one group cause this: roll them to one",
                message.offset,
                exc,
            )
            with self._lock:
                self._in_hand.append(message.offset)
                self._messages[message.offset] = message
                self._done.add(message.offset)
            return
        with self._lock:
            self._in_hand.append(message.offset)
            self._messages[message.offset] = message
            self._waiting.setdefault(request.idempotency_key, []).append(message.offset)
        # An already queued key finishes with the one in flight (its offsets wait on the key).
        self.executor.submit([request])

    def done(self, executed: executor_mod.Executed) -> None:
        """The executor's on_done: follow-ups made durable, then the request's offsets marked done."""
        if executed.outcome.details.get("reason") == "not_leader":
            return  # not acted on: the next leader reads it again
        for follow_up in self.follow_ups:
            request = follow_up(executed)
            if request is not None:
                self.produce(request)
        self._producer.flush(timeout=30)
        with self._lock:
            for offset in self._waiting.pop(executed.request.idempotency_key, []):
                self._done.add(offset)
        self.executed += 1

    # -- the loop's turn -----------------------------------------------------------------------

    def step(self, consumer: source.Source) -> None:
        """Hold the partition while not leading or while the lanes are full; commit what is done."""
        if not self._owned:
            return
        hold = not self._elector.is_leader() or self.outstanding >= MAX_IN_HAND
        partition = [source.Partition(self._topic, 0)]
        if hold and not self._paused:
            consumer.pause(partition)
            self._paused = True
        elif not hold and self._paused:
            consumer.resume(partition)
            self._paused = False
        if self._clock() - self._last_commit >= COMMIT_INTERVAL_S:
            self.commit_done(consumer)
        if not hold and self._clock() - self._last_resubmit >= RESUBMIT_INTERVAL_S:
            self._last_resubmit = self._clock()
            assert self.executor is not None
            # Journaled and not final (in progress, or begun by a killed owner): ask the handler again.
            self.executor.resubmit_pending()

    def commit_done(self, consumer: source.Source) -> None:
        self._last_commit = self._clock()
        last = None
        with self._lock:
            while self._in_hand and self._in_hand[0] in self._done:
                offset = self._in_hand.pop(0)
                self._done.discard(offset)
                last = self._messages.pop(offset)
        if last is not None:
            consumer.commit([last])

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._in_hand)

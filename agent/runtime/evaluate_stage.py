"""Stage 2: the owner of each fragments partition evaluates the models hashed to it.

The agents' consumer group also covers ``<prefix>.fragments``; Kafka gives every partition one
owner, so every model has exactly one evaluator at a time and verdicts do not depend on how many
agents run. On assignment the owner reads the models' state back from
``<prefix>.state``; on revocation it drops them without writing (the new owner may already
be reading: a late write could roll its state back).

Every ``streams.state_interval_s`` it makes its work durable, in order: decided actions and the
state of every model that changed are produced (acks=all) and acknowledged, then the fragment
offsets are committed. A crash in between replays fragments onto the last stored state: the
evaluator drops entries it already counted and re-decides the same actions under the same
idempotency keys, which the executor's journal runs once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kafka
from kafka import errors as kafka_errors

from agent import policy
from agent import settings as settings_mod
from agent.evaluate import model as model_mod
from agent.ingest import fragments, source
from agent.observability import errors
from agent.observability import metrics as metrics_mod
from agent.pipeline import engine as engine_mod
from agent.respond import idempotency
from agent.runtime import acks
from agent.runtime import table as table_mod
from detectors import window as window_mod

log = logging.getLogger(__name__)

EvaluationHook = Callable[[str, engine_mod.Evaluation], None]
# (model, decision, the window it judged: None for a policy tick without a window)
DecisionHook = Callable[[str, policy.Decision, Mapping[str, Any] | None], None]


class EvaluateStage:
    def __init__(
        self,
        *,
        streams: settings_mod.StreamsSettings,
        fragments_topic: str,
        actions_topic: str,
        partitions: int,
        factory: model_mod.EvaluatorFactory,
        state: table_mod.CompactedTable,
        producer: kafka.KafkaProducer,
        metrics: metrics_mod.AgentMetrics,
        on_evaluation: EvaluationHook | None = None,
        on_decision: DecisionHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fragments_topic = fragments_topic
        self._actions_topic = actions_topic
        self._partitions = partitions
        self._factory = factory
        self._state = state
        self._producer = producer
        self._metrics = metrics
        self._on_evaluation = on_evaluation
        self._on_decision = on_decision
        self._clock = clock
        self._sends = acks.PendingSends()
        self._interval_s = streams.state_interval_s
        self.topics = frozenset({fragments_topic})
        self._consumer: source.Source | None = None
        self.evaluators: dict[str, model_mod.ModelEvaluator] = {}
        self._owned: set[int] = set()
        self._uncommitted: dict[tuple[str, int], source.RawMessage] = {}
        self._last_durable = clock()
        self.unreadable = 0
        self.dropped_state = 0
        self.actions_sent = 0

    # -- ownership -----------------------------------------------------------------------------

    def assigned(self, partitions: Sequence[source.Partition]) -> None:
        numbers = [p.partition for p in partitions if p.topic == self._fragments_topic]
        self._owned.update(numbers)
        restored = 0
        for key, versions in self._state.read(numbers).items():
            model = key.decode("utf-8", errors="replace")
            try:
                state = model_mod.decode_state(versions[-1])
                evaluator = self._factory.create(model)
                dropped = evaluator.restore(state)
            except (model_mod.StateError, ValueError) as exc:
                # State this agent cannot use is dropped, never misapplied: the model starts afresh.
                self.dropped_state += 1
                log.warning(
                    "model %s: its stored state cannot be read (%s); windows and detectors start "
                    "afresh, so persistence counts begin again. Nothing to do unless it repeats",
                    model,
                    exc,
                )
                continue
            if dropped.windows or dropped.detectors:
                self.dropped_state += 1
            self.evaluators[model] = evaluator
            restored += 1
        for number in numbers:
            self._resume(number)
        log.info("fragments partitions %s assigned; %d models restored", sorted(numbers), restored)

    def _resume(self, number: int) -> None:
        """Read the partition from where its stored states end, or from the commit if earlier.

        Always by an explicit seek: kafka-python keeps the fetch position of a partition that
        a rebalance hands back to the same agent, ahead of what the restored state counted.
        A state and its position agree; the committed offset may be ahead of the state read here
        (the previous owner stored and committed once more before it saw the revocation).
        Reading from the earlier of the two re-applies fragments: the evaluators drop what their
        state already counted, and nothing counted nowhere is skipped.
        """
        if self._consumer is None:
            return
        partition = source.Partition(self._fragments_topic, number)
        positions = [
            e.position
            for m, e in self.evaluators.items()
            if self._partition_of(m) == number and e.position >= 0
        ]
        committed = self._consumer.committed(partition)
        starts = [*positions, *([committed] if committed is not None else [])]
        if starts:
            self._consumer.seek(partition, min(starts))

    def revoked(self, partitions: Sequence[source.Partition]) -> None:
        numbers = {p.partition for p in partitions if p.topic == self._fragments_topic}
        self._owned -= numbers
        for model in [m for m in self.evaluators if self._partition_of(m) in numbers]:
            del self.evaluators[model]
        self._uncommitted = {k: m for k, m in self._uncommitted.items() if k[1] not in numbers}

    def _partition_of(self, model: str) -> int:
        return fragments.partition_for(model, self._partitions)

    def _evaluator(self, model: str) -> model_mod.ModelEvaluator:
        found = self.evaluators.get(model)
        if found is None:
            found = self.evaluators[model] = self._factory.create(model)
        return found

    # -- the loop ------------------------------------------------------------------------------

    def attach(self, consumer: source.Source) -> None:
        self._consumer = consumer

    def handle(self, message: source.RawMessage) -> None:
        self._uncommitted[(message.topic, message.partition)] = message
        try:
            fragment = fragments.decode(message.value)
        except fragments.FragmentError as exc:
            self.unreadable += 1
            log.warning(
                "skipping unreadable fragment at partition %d offset %d: %s",
                message.partition,
                message.offset,
                exc,
            )
            return
        evaluator = self._evaluator(fragment.model)
        judged_windows = evaluator.apply(fragment)
        evaluator.position = message.offset + 1
        for judged in judged_windows:
            self._handle(evaluator, judged.evaluation, judged.records)

    def due(self) -> bool:
        return self._clock() - self._last_durable >= self._interval_s

    def _handle(
        self, evaluator: model_mod.ModelEvaluator, evaluation: engine_mod.Evaluation, records: int
    ) -> None:
        if self._on_evaluation is not None:
            self._on_evaluation(evaluator.model, evaluation)
        decision = evaluation.decision
        if isinstance(decision, policy.Decision):
            window = evaluation.window
            judged = {
                "model": evaluator.model,
                "model_version": window.model_version,
                "segment": dict(window.segment) if window.segment else None,
                "labelled": evaluation.labelled,
                "size": window.size,
                # How far into the model's stream (as this evaluator counted it) the window ends.
                "records": records,
                "last_event_time": _last_event_time(window),
            }
            self._decided(evaluator.model, decision, judged)

    def _decided(
        self, model: str, decision: policy.Decision, window: Mapping[str, Any] | None = None
    ) -> None:
        if self._on_decision is not None:
            self._on_decision(model, decision, window)
        for request in decision.actions:
            sent = self._producer.send(
                self._actions_topic,
                key=model.encode("utf-8"),
                value=json.dumps(idempotency.request_to_json(request), sort_keys=True).encode("utf-8"),
                partition=0,
            )
            self._sends.add(sent)
            self.actions_sent += 1

    def tick(self, now: float) -> None:
        """Policy ticks (forced actions, expiries) and time windows, for every owned model."""
        for model, evaluator in list(self.evaluators.items()):
            self._decided(model, evaluator.tick(now))
            for evaluation in evaluator.time_tick():
                self._handle(
                    evaluator, evaluation, evaluator.joined if evaluation.labelled else evaluator.predictions
                )

    def make_durable(self, consumer: source.Source) -> bool:
        """Actions and changed states acknowledged, then the fragment offsets committed."""
        self._last_durable = self._clock()
        owned = {p.partition for p in consumer.assignment() if p.topic == self._fragments_topic}
        written: list[model_mod.ModelEvaluator] = []
        try:
            for model, evaluator in self.evaluators.items():
                partition = self._partition_of(model)
                # A partition that moved away is the new owner's: writing to it could roll it back.
                if evaluator.dirty and partition in owned:
                    encoded = model_mod.encode_state(evaluator.state())
                    written.append(evaluator)
                    self._sends.add(self._state.put(model.encode("utf-8"), encoded, partition))
            self._producer.flush(timeout=30)
        except kafka_errors.KafkaError as exc:  # a state over max_request_size raises in send()
            failure: BaseException | None = exc
            self._sends.take_failure()  # this checkpoint failed: its sends are judged no further
        else:
            failure = self._sends.take_failure()
        if failure is not None:
            log.warning(
                "the broker did not acknowledge actions or state (%s); fragment offsets stay "
                "uncommitted and the windows are judged again, no decision is lost. Check the broker "
                "if this repeats (a state over the topic's max.message.bytes: lower window.size)",
                errors.describe(failure),
            )
            # The states in memory are still the truth: the next checkpoint writes them again
            # before it commits anything.
            for evaluator in written:
                evaluator.dirty = True
            return False
        committed = consumer.commit(list(self._uncommitted.values()))
        if committed:
            self._uncommitted = {}
        return committed


def _last_event_time(window: window_mod.Window) -> float | None:
    stamps = window.timestamps
    return float(stamps.max()) if stamps is not None and len(stamps) else None

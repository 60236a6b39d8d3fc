"""One model's evaluation, owned by one agent at a time: windows, detectors, policy, dedup.

``ModelEvaluator.apply`` takes the fragments of its model in order and returns evaluations
(closed windows with their results and decision). Entries at or below the highest input
position already counted (per stream and partition) are dropped as duplicates: input ingested
twice (crash between publishing and committing, rebalance) is never counted twice.

``state()`` is everything the evaluator learned, as data in an explicit versioned format
(``ModelState``, msgpack); another agent restores it with ``restore`` when it takes the model
over. What the current settings no longer fit (a changed window or detector configuration) is
dropped with a log line and counted, never misapplied.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import msgspec

from agent import policy
from agent import settings as settings_mod
from agent.ingest import fragments, records
from agent.pipeline import engine as engine_mod
from agent.policy import decider as decider_mod

log = logging.getLogger(__name__)

STATE_FORMAT = 1


class StateError(ValueError):
    """Stored state this agent cannot use (unknown format, another model, unreadable)."""


class ModelState(msgspec.Struct, gc=False):
    """The versioned, explicit state of one model's evaluation (not a pickled object graph)."""

    format: int
    model: str
    # JSON text of the settings groups the state depends on: a mismatch drops that part.
    window_settings: str
    detector_settings: str
    engine: engine_mod.EngineState
    policy: dict[str, Any]
    # "stream:partition" -> highest input offset already counted (prediction / joined entries).
    counted: dict[str, int]
    counted_joined: dict[str, int]
    evaluations: int
    predictions: int
    joined: int
    watermarks: dict[int, float]
    position: int


_DECODER = msgspec.msgpack.Decoder(ModelState)
# Open windows hold records decoded from fragments, whose features are ``FeatureRow``s.
_ENCODER = msgspec.msgpack.Encoder(enc_hook=records.encode_hook)


def settings_text(group: Any) -> str:
    return json.dumps(group.model_dump(mode="json"), sort_keys=True)


@dataclasses.dataclass
class DroppedState:
    """What a restore had to leave behind because the settings changed (for logs and metrics)."""

    windows: bool = False
    detectors: bool = False


@dataclasses.dataclass(frozen=True)
class Judged:
    evaluation: engine_mod.Evaluation
    # Entries of the window's kind (predictions, or label-joined) counted when it closed.
    records: int


class ModelEvaluator:
    def __init__(
        self,
        model: str,
        engine: engine_mod.Engine,
        decider: decider_mod.PolicyDecider,
        *,
        window_settings: str,
        detector_settings: str,
        clock: Callable[[], float],
        idle_input_s: float,
    ) -> None:
        self.model = model
        self._clock = clock
        self._idle_input_s = idle_input_s
        self.engine = engine
        self.decider = decider
        self._window_settings = window_settings
        self._detector_settings = detector_settings
        self._counted: dict[str, int] = {}
        self._counted_joined: dict[str, int] = {}
        # Input partition -> the latest event time any ingest worker has reported for it.
        self._watermarks: dict[int, float] = {}
        # Input partition -> the clock when its watermark last advanced (idle partitions are skipped).
        self._advanced_at: dict[int, float] = {}
        self.evaluations = 0
        self.duplicates = 0
        # The fragments offset after the last fragment applied: where a new owner resumes, so
        # that state and position always agree whoever stored the state last.
        self.position = -1
        # Entries counted so far (predictions / label-joined): where in the model's stream a window ends.
        self.predictions = 0
        self.joined = 0
        # True when something changed since the last ``state()``: only those models are stored.
        self.dirty = False

    def apply(self, fragment: fragments.Fragment) -> list[Judged]:
        """The windows the fragment closed, each with how far into the model's stream it ends."""
        if fragment.model != self.model:
            raise ValueError(f"fragment of model {fragment.model!r} given to the evaluator of {self.model!r}")
        evaluations: list[Judged] = []
        for entry in fragment.entries:
            counted = self._counted_joined if entry.labelled else self._counted
            position = f"{entry.stream}:{entry.partition}"
            if entry.offset <= counted.get(position, -1):
                self.duplicates += 1
                continue
            counted[position] = entry.offset
            self.dirty = True
            if entry.labelled:
                label = entry.label
                if label is None:  # a joined entry always carries its label; be safe on bad input
                    continue
                self.joined += 1
                evaluations.extend(
                    Judged(e, self.joined) for e in self.engine.add_joined(entry.record, label, entry.index)
                )
            else:
                self.predictions += 1
                evaluations.extend(
                    Judged(e, self.predictions) for e in self.engine.add_prediction(entry.record, entry.index)
                )
        low = self._advance_watermarks(fragment.watermarks)
        if low is not None:
            evaluations.extend(Judged(e, self.predictions) for e in self.engine.advance(low))
        self.evaluations += len(evaluations)
        return evaluations

    def _advance_watermarks(self, reported: dict[int, float]) -> float | None:
        """The event time every active input partition has reached (None: none known).

        Time windows close once every input partition's event time passed them; a partition whose
        event time has not advanced for ``idle_input_s`` (its producer went quiet) no longer holds
        them open, as with Flink's idle sources.
        """
        now = self._clock()
        for partition, event_time in reported.items():
            if event_time > self._watermarks.get(partition, -math.inf):
                self._watermarks[partition] = event_time
                self._advanced_at[partition] = now
        active = [
            event_time
            for partition, event_time in self._watermarks.items()
            if now - self._advanced_at[partition] < self._idle_input_s
        ]
        return min(active) if active else None

    def tick(self, now: float) -> policy.Decision:
        """Run the policy with no new results (forced actions and expiries apply on time)."""
        decision = self.decider([], now)
        if decision.actions:
            self.dirty = True
        return decision

    def time_tick(self) -> list[engine_mod.Evaluation]:
        evaluations = self.engine.tick()
        if evaluations:
            self.dirty = True
        return evaluations

    # -- state as data ------------------------------------------------------------------------------

    def state(self) -> ModelState:
        self.dirty = False
        return ModelState(
            format=STATE_FORMAT,
            model=self.model,
            window_settings=self._window_settings,
            detector_settings=self._detector_settings,
            engine=self.engine.state(),
            policy=self.decider.state.to_json(),
            counted=dict(self._counted),
            counted_joined=dict(self._counted_joined),
            evaluations=self.evaluations,
            predictions=self.predictions,
            joined=self.joined,
            watermarks=dict(self._watermarks),
            position=self.position,
        )

    def restore(self, state: ModelState) -> DroppedState:
        if state.format != STATE_FORMAT:
            raise StateError(f"state format {state.format}; this agent reads format {STATE_FORMAT}")
        if state.model != self.model:
            raise StateError(f"state of model {state.model!r} offered to the evaluator of {self.model!r}")
        dropped = DroppedState(
            windows=state.window_settings != self._window_settings,
            detectors=state.detector_settings != self._detector_settings,
        )
        self.engine.restore(
            state.engine, keep_windows=not dropped.windows, keep_detectors=not dropped.detectors
        )
        self.decider.state = policy.PolicyState.from_json(state.policy)
        self._counted = dict(state.counted)
        self._counted_joined = dict(state.counted_joined)
        self.evaluations = state.evaluations
        self.predictions = state.predictions
        self.joined = state.joined
        self._watermarks = dict(state.watermarks)
        # When they last advanced is not stored: a restored partition counts as just advanced.
        self._advanced_at = dict.fromkeys(self._watermarks, self._clock())
        self.position = state.position
        if dropped.windows or dropped.detectors:
            log.warning(
                "model %s: settings changed since its state was stored; dropped %s",
                self.model,
                ", ".join(part for part, gone in dataclasses.asdict(dropped).items() if gone),
            )
        return dropped


def encode_state(state: ModelState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(raw: bytes) -> ModelState:
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise StateError(f"unreadable model state: {exc}") from exc


class EvaluatorFactory:
    """Builds the evaluator of any model from the settings (one policy file, one reference)."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        *,
        reference_records: list[records.PredictionRecord] | None,
        reference_labels: list[float | str | None] | None = None,
        overrides_state: Callable[[], Any],
        clock: Callable[[], float],
        on_joined: Callable[[records.PredictionRecord, engine_mod.Label], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_joined = on_joined
        self._reference = reference_records
        self._reference_labels = reference_labels
        self._overrides_state = overrides_state
        self._clock = clock
        self._policies: dict[str, policy.PolicyConfig] = {}
        self._window_settings = settings_text(settings.window)
        self._detector_settings = settings_text(settings.detectors)

    def policy_for(self, model: str) -> policy.PolicyConfig:
        found = self._policies.get(model)
        if found is None:
            found = self._policies[model] = policy.load_policy(self._settings.policy.path, model_name=model)
        return found

    def create(self, model: str) -> ModelEvaluator:
        decider = decider_mod.PolicyDecider(self.policy_for(model), self._overrides_state)
        engine = engine_mod.build(
            self._settings,
            decide=decider,
            clock=self._clock,
            reference_records=self._reference,
            reference_labels=self._reference_labels,
        )
        engine.on_joined = self._on_joined
        return ModelEvaluator(
            model,
            engine,
            decider,
            window_settings=self._window_settings,
            detector_settings=self._detector_settings,
            clock=self._clock,
            idle_input_s=self._settings.streams.idle_input_s,
        )

"""`drift-agent replay`: the production pipeline fed from files, actions forced to dry-run.

Time is the event time of the stream (the clock never reads the wall), so a replay of the same
inputs writes the same events, byte for byte.
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

from actions import vocabulary
from agent import policy
from agent import settings as settings_mod
from agent.evaluate import model as evaluator
from agent.ingest import parsing, records
from agent.ingest import worker as worker_mod
from agent.pipeline import engine as engine_mod
from agent.pipeline import reference_files, windows
from agent.policy import decider
from agent.policy import explain as explain_mod
from agent.settings import budget
from detectors import base

# The command line's exit status for a configuration that cannot run (as `drift-agent run`).
EXIT_CONFIG = 2


class EventClock:
    """A clock that follows the stream's event time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _read_labels(path: pathlib.Path, parser: parsing.RecordParser) -> Iterator[records.LabelRecord]:
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            parsed = parser.parse_label(line.rstrip(b"\n"))
            if isinstance(parsed, records.LabelRecord):
                yield parsed


def result_event(result: base.DetectorResult, evaluation: engine_mod.Evaluation) -> dict[str, Any]:
    """The contract's event for one detector result (README, Commands: the replay event format)."""
    severity = evaluation.decision.severity if evaluation.decision is not None else None
    return {
        "type": "result",
        "record_index": evaluation.window.last_record_index,
        "detector": result.detector,
        "family": result.family.value,
        "feature": result.feature,
        "statistic": result.statistic,
        "score": result.score,
        "threshold": result.threshold,
        "drifted": result.drifted,
        "severity": severity,
        "action": None,
        "p_value": result.p_value,
        "effect_size": result.effect_size,
        "model_version": result.model_version,
        "segment": dict(result.segment) if result.segment else None,
        "labelled_window": evaluation.labelled,
        "at_record": evaluation.at_record,
    }


def evaluation_events(evaluation: engine_mod.Evaluation) -> Iterator[dict[str, Any]]:
    for result in evaluation.results:
        yield result_event(result, evaluation)
        for detail in result.details:
            yield result_event(detail, evaluation)
    for failure in evaluation.failed:
        yield {
            "type": "detector_error",
            "record_index": evaluation.window.last_record_index,
            "detector": failure.detector,
            "error": failure.error,
            "model_version": evaluation.window.model_version,
            "labelled_window": evaluation.labelled,
            "at_record": evaluation.at_record,
        }
    if evaluation.decision is not None:
        yield decision_event(evaluation)


def decision_event(evaluation: engine_mod.Evaluation) -> dict[str, Any]:
    """The contract's event for one decision (README, Commands: the replay event format)."""
    decision = evaluation.decision
    assert isinstance(decision, policy.Decision)
    worst = max(
        (r for r in decision.incidents if r.status == "open"), key=lambda r: r.severity.rank, default=None
    )
    score = worst.max_score_ratio if worst is not None and worst.max_score_ratio is not None else 0.0
    return {
        "type": "decision",
        "record_index": evaluation.window.last_record_index,
        "detector": "policy",
        "family": worst.family if worst is not None else None,
        "feature": None,
        "score": score,
        "threshold": 1.0,
        "drifted": decision.severity != vocabulary.Severity.NONE,
        "severity": decision.severity.value,
        "action": decision.actions[0].kind.value if decision.actions else None,
        "actions": [
            {"kind": a.kind.value, "incident_id": a.incident_id, "idempotency_key": a.idempotency_key}
            for a in decision.actions
        ],
        "rule_id": decision.rule_id,
        "incidents": [r.incident_id for r in decision.incidents if r.status == "open"],
        "held": [
            {"kind": s.kind, "incident_id": s.incident_id, "reason": s.reason}
            for s in decision.suppressed
            if s.reason.startswith("held:")
        ],
        "why": explain_mod.explain(decision),
        "model_version": evaluation.window.model_version,
        "labelled_window": evaluation.labelled,
        "at_record": evaluation.at_record,
    }


class Summary:
    """What a replay found, for the lines printed at its end."""

    def __init__(self) -> None:
        self.events = 0
        self.windows = 0
        self.drifted: collections.Counter[str] = collections.Counter()  # detector[/feature]
        self.decisions: collections.Counter[str] = collections.Counter()  # by severity
        self.first_page: dict[str, Any] | None = None
        self.detector_errors: collections.Counter[str] = collections.Counter()  # detector

    def add(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        if event["type"] == "result" and event["drifted"]:
            feature = event.get("feature")
            self.drifted[f"{event['detector']}/{feature}" if feature else str(event["detector"])] += 1
        if event["type"] == "detector_error":
            self.detector_errors[str(event["detector"])] += 1
        if event["type"] == "decision":
            self.windows += 0 if event.get("at_record") else 1
            self.decisions[str(event["severity"])] += 1
            if self.first_page is None and event["actions"] and event["severity"] in _PAGING:
                self.first_page = dict(event)

    def lines(self) -> list[str]:
        severities = ", ".join(
            f"{n} {s}" for s, n in sorted(self.decisions.items(), key=lambda i: _RANK[i[0]])
        )
        out = [f"replay: {self.windows} windows judged; decisions by severity: {severities or 'none'}"]
        top = ", ".join(f"{name} ({n})" for name, n in self.drifted.most_common(8))
        out.append(f"replay: drifted results (windows): {top or 'none'}")
        if self.detector_errors:
            failed = ", ".join(f"{name} ({n})" for name, n in self.detector_errors.most_common())
            out.append(f"replay: detectors that raised (their results are missing; see the events): {failed}")
        page = self.first_page
        if page is None:
            out.append("replay: nothing paged (no decision of severity moderate or worse)")
        else:
            where = (
                "the record where a sequential test fired"
                if page.get("at_record")
                else "a window's last record"
            )
            out.append(
                f"replay: first page at record {page['record_index']} ({where}): {page['severity']}, rule "
                f"{page['rule_id']}, incidents {', '.join(page['incidents'])}, actions "
                f"{', '.join(a['kind'] for a in page['actions'])}"
            )
        return out


_PAGING = ("moderate", "severe", "critical")
_RANK = {name: rank for rank, name in enumerate(("none", "minor", "moderate", "severe", "critical"))}


def _write(handle: IO[str], events: Iterator[dict[str, Any]], summary: Summary) -> int:
    count = 0
    for event in events:
        handle.write(json.dumps(event, sort_keys=True, allow_nan=False, default=_json_default) + "\n")
        summary.add(event)
        count += 1
    return count


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ReplayPipeline:
    """The ingest worker and one evaluator per model, driven record by record (no Kafka)."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        parser: parsing.RecordParser,
        reference: reference_files.LoadResult,
        clock: EventClock,
        *,
        with_labels: bool,
    ) -> None:
        # Any name: replay feeds labels through add_label directly. No labels file, no join state.
        labels_flow = "replay-labels" if with_labels else None
        self.worker = worker_mod.IngestWorker(
            parser=parser,
            labels_topic=labels_flow,
            join=worker_mod.join_from(
                settings.labels.ttl_s,
                settings.labels.max_pending,
                labels_flow,
                clock,
                max_bytes=settings.memory.bytes_for("label_join"),
            ),
            producer="replay",
            max_fragment_records=settings.streams.max_fragment_records,
        )
        # Replay never acts: decisions are written as events, no executor exists (dry-run by construction).
        self.factory = evaluator.EvaluatorFactory(
            settings,
            reference_records=reference.records,
            reference_labels=reference.labels,
            overrides_state=decider.empty_overrides,
            clock=clock,
        )
        self.evaluators: dict[str, evaluator.ModelEvaluator] = {}

    def evaluate(self) -> Iterator[engine_mod.Evaluation]:
        for fragment in self.worker.take():
            found = self.evaluators.get(fragment.model)
            if found is None:
                found = self.evaluators[fragment.model] = self.factory.create(fragment.model)
            for judged in found.apply(fragment):
                yield judged.evaluation

    def flush(self) -> Iterator[engine_mod.Evaluation]:
        for found in self.evaluators.values():
            yield from found.engine.flush()


def run_replay(
    settings: settings_mod.AgentSettings,
    *,
    reference_path: pathlib.Path,
    stream: pathlib.Path,
    labels: pathlib.Path | None,
    events_out: pathlib.Path,
) -> int:
    parser = parsing.RecordParser(settings.mapping, settings.kafka.max_message_bytes)
    clock = EventClock()
    reference = reference_files.load_labelled(reference_path, parser)
    # Stream records are held to the vector shapes the reference fixed (as the sidecar's are).
    parser = parser.with_shapes(reference.shapes)
    try:
        budget.check_reference_records(
            settings, reference.records, time_window_records=windows.DEFAULT_MAX_TIME_WINDOW_RECORDS
        )
    except settings_mod.ConfigError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    pipeline = ReplayPipeline(settings, parser, reference, clock, with_labels=labels is not None)
    pending_labels = enumerate(_read_labels(labels, parser) if labels is not None else iter(()))
    next_label = next(pending_labels, None)
    rejected_path = events_out.with_name(events_out.name + ".rejected.jsonl")
    written = rejected = 0
    summary = Summary()
    with events_out.open("w", encoding="utf-8") as out, rejected_path.open("w", encoding="utf-8") as bad:
        with stream.open("rb") as handle:
            for index, line in enumerate(handle):
                parsed = parser.parse_prediction(line.rstrip(b"\n"))
                if isinstance(parsed, records.Rejected):
                    rejected += 1
                    bad.write(
                        json.dumps({"record_index": index, "reason": parsed.reason, "detail": parsed.detail})
                        + "\n"
                    )
                    continue
                clock.now = max(clock.now, parsed.timestamp)
                while next_label is not None and next_label[1].timestamp <= parsed.timestamp:
                    pipeline.worker.add_label(next_label[1], 0, next_label[0])
                    written += _write(out, _events(pipeline.evaluate()), summary)
                    next_label = next(pending_labels, None)
                pipeline.worker.add_prediction(parsed, 0, index)
                written += _write(out, _events(pipeline.evaluate()), summary)
        while next_label is not None:
            pipeline.worker.add_label(next_label[1], 0, next_label[0])
            written += _write(out, _events(pipeline.evaluate()), summary)
            next_label = next(pending_labels, None)
        written += _write(out, _events(pipeline.flush()), summary)
    for said in summary.lines():
        print(said, file=sys.stderr)
    print(
        f"replay: {written} events -> {events_out}; {rejected} rejected records -> {rejected_path}",
        file=sys.stderr,
    )
    return 0


def _events(evaluations: Iterator[engine_mod.Evaluation]) -> Iterator[dict[str, Any]]:
    for evaluation in evaluations:
        yield from evaluation_events(evaluation)


def explain(events_path: pathlib.Path, record: int) -> int:
    """`drift-agent explain`: the decision at (or first after) ``record`` in a replay's events."""
    try:
        lines = events_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        print(f"cannot read {events_path}: {exc.strerror}", file=sys.stderr)
        return 2
    events = [json.loads(line) for line in lines if line.strip()]
    decisions = [e for e in events if e["type"] == "decision" and e["record_index"] >= record]
    if not decisions:
        print(f"no decision at or after record {record} in {events_path}", file=sys.stderr)
        return 1
    at = decisions[0]["record_index"]
    for decision in (e for e in decisions if e["record_index"] == at):
        kind = "alarm at this record" if decision.get("at_record") else "window ending at this record"
        actions = ", ".join(a["kind"] for a in decision["actions"]) or "none"
        print(f"record {at} ({kind}): severity {decision['severity']}, actions {actions}")
        for line in decision.get("why") or ["nothing drifted: every incident clean"]:
            print(f"  {line}")
    drifted = [e for e in events if e["type"] == "result" and e["record_index"] == at and e["drifted"]]
    for result in drifted:
        feature = f"/{result['feature']}" if result["feature"] else ""
        scored = f"score {result['score']:.4g} vs {result['threshold']:.4g}, p {result['p_value']}"
        print(f"  drifted: {result['detector']}{feature} {scored}, effect {result['effect_size']}")
    return 0

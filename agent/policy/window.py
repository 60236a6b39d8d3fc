"""The policy's entry point ``decide``: detector results in, severity and an action plan out, pure.

``decide(state, results, policy, overrides, now) -> (state, Decision)`` never does I/O and
never reads a clock: the agent checkpoints ``PolicyState`` (plain JSON) and a restart that
replays the same windows from the checkpoint gets the same decisions and idempotency keys.

How one window is decided (config/policy.yaml documents every knob; each module says more):

1. Results are split into units: a dataset-level result with per-feature ``details`` counts as
   its details; any other result counts as itself (``units``).
2. Each unit is judged by the first rule that matches it (``judge``).
3. Units are grouped into incidents, one per (model, family, feature group[, segment]) (``judge``);
   while a canary's split serves two versions (seen among the last 8 windows), the version is
   part of the segment, and when a version stops serving its incidents close with it.
4. Each drifted incident gets a severity, graded by the rule's bands (``judge``).
5. Hysteresis and flapping control decide whether the incident opens, escalates, holds or
   resolves; only opening and escalation produce a plan (``planner``, ``incidents``).
6. The plan for a severity comes from ``plans``; ``remediate`` picks rollback or retrain by the
   sudden-vs-gradual rule (``planner``).
7. Remediation of a kind runs at most once per incident epoch and once per ``cooldown_s`` per
   model; operator-forced actions (overrides) bypass both (``planner``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from actions import vocabulary
from agent import overrides
from agent.policy import split
from agent.policy.judge import _Group, _group_units
from agent.policy.planner import QUALITY, _Planner
from agent.policy.schema import PolicyConfig
from agent.policy.state import Decision, PolicyState
from agent.policy.units import Unit, units_of
from detectors import base as detectors_base


def decide(
    state: PolicyState,
    results: Sequence[detectors_base.DetectorResult],
    policy: PolicyConfig,
    overrides_state: overrides.OverrideState,
    now: float,
) -> tuple[PolicyState, Decision]:
    """Judge one window's results. Pure: ``state`` is not modified; the new state is returned."""
    new_state = state.copy()
    new_state.windows += 1
    model = policy.model_name
    units = units_of(results)
    _note_versions(new_state, units, now)
    serving = split.note_serving(new_state, units)
    if len(serving) > 1:
        units = [split.per_version(unit) for unit in units]
    groups, unmatched = _group_units(units, policy, model, overrides_state, now)
    planner = _Planner(new_state, policy, overrides_state, now, quality_evidence=_quality_evidence(groups))
    # Before this window's incidents move: a version serving alone again takes its open incident
    # back to the model's key, which this window then updates.
    planner.end_split_incidents(serving)
    # Quality incidents first: one opening in this window explains the drift judged after it.
    ordered = sorted(groups.items(), key=lambda item: (item[1].family != QUALITY, item[0]))
    reports = [planner.advance(incident_key, group) for incident_key, group in ordered]
    planner.add_forced_actions()
    raised = [r for r in reports if r.status == "open"]
    worst_report = max(raised, key=lambda r: r.severity.rank, default=None)
    decision = Decision(
        time=now,
        severity=worst_report.severity if worst_report is not None else vocabulary.Severity.NONE,
        rule_id=worst_report.rule_id if worst_report is not None else None,
        actions=tuple(planner.actions),
        incidents=tuple(reports),
        suppressed=tuple(planner.suppressed),
        inputs=tuple(result.to_json() for result in results),
        unmatched=unmatched,
        overrides_in_force=overrides_state.summary(now),
    )
    return new_state, decision


def _quality_evidence(groups: Mapping[str, _Group]) -> frozenset[str]:
    """Quality incidents with a failed check in this window (opened or not yet)."""
    return frozenset(
        key
        for key, group in groups.items()
        if group.family == QUALITY and any(j.drifted for j in group.judged)
    )


def _note_versions(state: PolicyState, units: Sequence[Unit], now: float) -> None:
    for unit in units:
        if unit.model_version is not None and unit.model_version not in state.versions_first_seen:
            state.versions_first_seen[unit.model_version] = now

"""Planning: how one window moves each incident, and the action requests that follow.

* Hysteresis and flapping control (``agent.policy.incidents``) decide whether the incident
  opens, escalates, holds or resolves; only opening and escalation produce a plan.
* The plan for a severity comes from ``plans``: by default minor -> log; moderate -> alert;
  severe -> alert + remediate; critical -> page + rollback. ``remediate`` is the explicit
  sudden-vs-gradual rule (``remediation``): the trigger is *sudden* when its family is one of
  ``sudden_families`` (performance, errors, latency), it reached severe within
  ``sudden_within_windows`` windows of its first drifted window, and (with
  ``require_new_version``) the version it fired on was first seen less than
  ``new_version_max_age_s`` ago with an older version seen before it. Sudden -> ``on_sudden``
  (rollback); otherwise -> ``on_gradual`` (retrain).
* Remediation of a kind runs at most once per incident epoch and once per ``cooldown_s`` per
  model; operator-forced actions (overrides) bypass both.
* Data quality: a ``quality`` incident only notifies (remediation steps in its plan are
  suppressed). Drift it explains has its rollback and retrain held (``held: data quality
  incident ...`` in the decision and the alert), and issued later only if the drift goes on for
  ``raise_after`` windows in a row once nothing explains it. Explained: data drift whose window,
  graded as if the features with a quality incident open or failing in this window (same model
  and segment) were clean, would not call for the remediation (genuine drift on clean features
  still does); the predictions, performance or concept of a model with one. Forced actions
  (overrides) are never held.
* Idempotency keys are built from the incident, its epoch, the action kind and the severity or
  version acted on (``force/<id>`` for a forced action), never from a clock, so a replay from a
  checkpoint asks for the same actions under the same keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from actions import base as actions_base
from actions import vocabulary
from agent import overrides
from agent.policy import incidents, split
from agent.policy.judge import _grade, _Group, _Judged
from agent.policy.schema import REMEDIATION_STEPS, PolicyConfig, RemediationKind, Rule
from agent.policy.state import MAX_FORCED_IDS_KEPT, IncidentReport, PolicyState, Suppressed
from agent.policy.units import Unit
from detectors import base as detectors_base

QUALITY = detectors_base.DetectorFamily.QUALITY.value
# Drift whose features a quality incident names is explained by it; so is drift of what the model
# makes of its inputs (predictions, performance, concept) while any of its inputs is broken.
_EXPLAINED_PER_FEATURE = frozenset({detectors_base.DetectorFamily.DATA_DRIFT.value})
_EXPLAINED_PER_MODEL = frozenset(
    {
        detectors_base.DetectorFamily.PREDICTION_DRIFT.value,
        detectors_base.DetectorFamily.PERFORMANCE.value,
        detectors_base.DetectorFamily.CONCEPT_DRIFT.value,
    }
)
_REMEDIATIONS = frozenset({"rollback", "retrain"})


class _Planner:
    """Turns incident transitions into action requests (one instance per ``decide`` call)."""

    def __init__(
        self,
        state: PolicyState,
        policy: PolicyConfig,
        overrides_state: overrides.OverrideState,
        now: float,
        *,
        quality_evidence: frozenset[str] = frozenset(),
    ) -> None:
        self.state = state
        self.policy = policy
        self.overrides = overrides_state
        self.now = now
        # Quality incidents with a failed check in this window (they explain drift even before
        # they open).
        self.quality_evidence = quality_evidence
        self.actions: list[actions_base.ActionRequest] = []
        self.suppressed: list[Suppressed] = []

    def advance(self, key: str, group: _Group) -> IncidentReport:
        rule = self.policy.rules[group.rule_index]
        incident = self.state.incidents.get(key)
        split_version = (group.segment or {}).get(split.SPLIT_VERSION_KEY)
        plain = None
        if split_version is not None:
            plain = split.model_incident_id(self.policy.model_name, group.family, group.group, group.segment)
            if incident is None:
                incident = split.carried_into_split(self.state, key, plain, split_version)
        if incident is None:
            incident = incidents.IncidentState(
                incident_id=key,
                model=self.policy.model_name,
                family=group.family,
                group=group.group,
                split_version=split_version,
                model_incident_id=plain,
            )
            self.state.incidents[key] = incident
        grade = _grade(group.judged, rule)
        counted = [j for j in group.judged if not j.insufficient]
        acknowledged = self.overrides.acknowledged(key, self.now) is not None
        needed = 0
        if not counted:
            event: incidents.Event = "insufficient"
        else:
            incident.rule_id = rule.id
            hysteresis = incidents.Hysteresis(
                raise_after=rule.raise_after,
                clear_after=rule.clear_after,
                critical_raise_after=rule.critical_raise_after,
                strong_raise_after=rule.strong_raise_after,
                material_raise_after=rule.material_raise_after,
                max_opens=self.policy.flapping.max_opens,
                flapping_window_s=self.policy.flapping.window_s,
            )
            drifted_units = [j for j in counted if j.drifted]
            version = _latest_version(self.state, [j.unit for j in drifted_units])
            closing_epoch_actions = list(incident.actions_taken)
            transition = incidents.step(
                incident,
                drifted=bool(drifted_units),
                severity=grade.severity,
                hysteresis=hysteresis,
                now=self.now,
                model_version=version,
                strong=_overwhelming(drifted_units, rule),
                material=rule.effect_size.grade(grade.effect).at_least(vocabulary.Severity.MODERATE),
            )
            event, needed = transition.event, transition.needed
            if transition.notify is not vocabulary.Severity.NONE:
                self._plan(incident, rule, transition, counted, acknowledged)
            elif event == "resolved":
                self._resolve(incident, rule, closing_epoch_actions)
            elif incident.held and drifted_units:
                self._release_held(incident, rule, counted)
            elif incident.held:
                incident.unexplained_streak = 0  # a clean window: the drift did not go on
        return IncidentReport(
            incident_id=key,
            rule_id=rule.id,
            event=event,
            status=incident.status,
            severity=incident.severity if incident.status == "open" else vocabulary.Severity.NONE,
            window_severity=grade.severity,
            epoch=incident.epoch,
            units=len(group.judged),
            drifted=sum(1 for j in group.judged if j.drifted),
            insufficient=sum(1 for j in group.judged if j.insufficient),
            below_effect_size=sum(1 for j in group.judged if j.below_effect_size),
            drifted_share=grade.share,
            max_score_ratio=grade.ratio,
            max_effect_size=grade.effect,
            flapping=incident.flapping,
            acknowledged=acknowledged,
            streak=incident.drift_streak,
            needed=needed,
            family=group.family,
        )

    def _plan(
        self,
        incident: incidents.IncidentState,
        rule: Rule,
        transition: incidents.Transition,
        counted: Sequence[_Judged],
        acknowledged: bool,
    ) -> None:
        drifted = [j for j in counted if j.drifted]
        severity = transition.notify
        plans = rule.plans or self.policy.plans
        steps = plans.for_severity(severity)
        kinds = [self._remediation_kind(incident) if step == "remediate" else step for step in steps]
        planned = [k for k in kinds if k != "none"]
        held_note = ""
        remediations = [k for k in planned if k in _REMEDIATIONS]
        if remediations and incident.family == QUALITY:
            for kind in remediations:
                self.suppressed.append(
                    Suppressed(kind, incident.incident_id, "data quality incidents alert or page only")
                )
        elif remediations and (explaining := self._explaining(incident.family, counted, rule)):
            held = _held_reason(explaining)
            for kind in remediations:
                self.suppressed.append(Suppressed(kind, incident.incident_id, held))
                if kind not in incident.held:
                    incident.held.append(kind)
            until = "it resolves" if len(explaining) == 1 else "they resolve"
            held_note = f"{held}: {', '.join(remediations)} held back until {until}"
        else:
            remediations = []
        planned = [k for k in planned if k not in remediations]
        notice = _Notice(
            incident=incident,
            severity=severity,
            event="update" if transition.event == "escalated" else "trigger",
            flapping=transition.event == "flapping",
            drifted=drifted,
            planned=planned,
            rule=rule,
            held=held_note,
        )
        for kind in planned:
            if kind in ("alert", "page", "log"):
                self._notify(notice, actions_base.ActionKind(kind), acknowledged)
            else:
                self._remediate(notice, actions_base.ActionKind(kind))

    def _explaining(self, family: str, counted: Sequence[_Judged], rule: Rule) -> list[str]:
        """The quality incidents that explain this window's drift, so that its remediation is held
        (rules in the module docstring); [] when nothing explains it or the rest calls for it too."""
        model = self.policy.model_name
        drifted = [j for j in counted if j.drifted]
        if family in _EXPLAINED_PER_FEATURE:
            explained: dict[int, str] = {}
            for position, judged in enumerate(counted):
                feature = judged.unit.result.feature
                if judged.drifted and feature is not None:
                    key = incidents.incident_id(model, QUALITY, feature, judged.unit.segment)
                    if self._quality_active(key):
                        explained[position] = key
            if not explained:
                return []
            # Graded as if the explained features were clean: genuine drift on the others may
            # call for the remediation by itself.
            rest = [
                dataclasses.replace(j, drifted=False) if i in explained else j for i, j in enumerate(counted)
            ]
            plans = rule.plans or self.policy.plans
            if set(plans.for_severity(_grade(rest, rule).severity)) & set(REMEDIATION_STEPS):
                return []
            return sorted(set(explained.values()))
        if family in _EXPLAINED_PER_MODEL:
            segments = {tuple(sorted((j.unit.segment or {}).items())) for j in drifted}
            return sorted(
                key
                for key, incident in self.state.incidents.items()
                if incident.family == QUALITY
                and self._quality_active(key)
                and any(
                    key == incidents.incident_id(model, QUALITY, incident.group, dict(s)) for s in segments
                )
            )
        return []

    def _quality_active(self, key: str) -> bool:
        incident = self.state.incidents.get(key)
        return key in self.quality_evidence or (incident is not None and incident.status == "open")

    def _release_held(
        self, incident: incidents.IncidentState, rule: Rule, counted: Sequence[_Judged]
    ) -> None:
        """Issue the remediation held back for a quality incident once nothing has explained the
        drift for ``raise_after`` drifted windows in a row."""
        if incident.status != "open":
            return
        if self._explaining(incident.family, counted, rule):
            incident.unexplained_streak = 0
            return
        incident.unexplained_streak += 1
        if incident.unexplained_streak < rule.raise_after:
            return
        drifted = [j for j in counted if j.drifted]
        held, incident.held = list(incident.held), []
        notice = _Notice(
            incident=incident,
            severity=incident.severity,
            event="update",
            flapping=incident.flapping,
            drifted=drifted,
            planned=held,
            rule=rule,
        )
        for kind in held:
            self._remediate(notice, actions_base.ActionKind(kind))

    def _remediation_kind(self, incident: incidents.IncidentState) -> RemediationKind:
        config = self.policy.remediation
        sudden = (
            incident.family in {f.value for f in config.sudden_families}
            and incident.severe_at_window is not None
            and incident.severe_at_window <= config.sudden_within_windows
            and (not config.require_new_version or self._is_new_version(incident.model_version))
        )
        return config.on_sudden if sudden else config.on_gradual

    def _is_new_version(self, version: str | None) -> bool:
        seen = self.state.versions_first_seen
        if version is None or version not in seen:
            return False
        first_seen = seen[version]
        has_older = any(t < first_seen for v, t in seen.items() if v != version)
        return has_older and self.now - first_seen < self.policy.remediation.new_version_max_age_s

    def _notify(self, notice: _Notice, kind: actions_base.ActionKind, acknowledged: bool) -> None:
        incident = notice.incident
        if acknowledged and kind is not actions_base.ActionKind.LOG:
            escalated_to_critical = (
                notice.event == "update" and notice.severity is vocabulary.Severity.CRITICAL
            )
            if not (kind is actions_base.ActionKind.PAGE and escalated_to_critical):
                self.suppressed.append(Suppressed(kind.value, incident.incident_id, "acknowledged"))
                return
        key = incidents.action_key(incident, kind.value, notice.severity.value)
        self._emit(notice.request(kind, key, self.policy))

    def _remediate(self, notice: _Notice, kind: actions_base.ActionKind) -> None:
        incident = notice.incident
        if kind.value in incident.actions_taken:
            self.suppressed.append(
                Suppressed(kind.value, incident.incident_id, "already issued in this epoch")
            )
            return
        cooldown_key = f"{incident.model}/{kind.value}"
        last = self.state.last_remediation.get(cooldown_key)
        if last is not None and self.now - last < notice.rule.cooldown_s:
            self.suppressed.append(
                Suppressed(
                    kind.value,
                    incident.incident_id,
                    f"cooldown ({self.now - last:.0f}s of {notice.rule.cooldown_s:.0f}s)",
                )
            )
            return
        spent = self._budget_spent(incident.model)
        budget = self.policy.remediation.budget
        if len(spent) >= budget.max_changes:
            self.suppressed.append(
                Suppressed(
                    kind.value,
                    incident.incident_id,
                    f"remediation budget exhausted ({len(spent)} automatic version changes in "
                    f"{budget.window_s / 3600:g} h, at most {budget.max_changes})",
                )
            )
            self._page_budget_exhausted(notice, spent)
            return
        # The version it acts on is part of the key: a fresh agent (empty state, epoch 1 again)
        # must not mistake an old rollback of another version, recorded in the registry's
        # journal under the same incident key, for this one.
        version = f"v{incident.model_version}" if incident.model_version else None
        request = notice.request(kind, incidents.action_key(incident, kind.value, version), self.policy)
        # A remediation an override will block does not start the cooldown or spend the budget:
        # once the freeze ends the next incident may act at once.
        if self.overrides.skip_reason(request, self.now) is None:
            self.state.last_remediation[cooldown_key] = self.now
            self.state.remediations.setdefault(incident.model, []).append(self.now)
        self._emit(request)

    def _budget_spent(self, model: str) -> list[float]:
        """The automatic version changes that count against ``model``'s budget now (pruned)."""
        since = self.now - self.policy.remediation.budget.window_s
        reset = self.overrides.budget_reset_at(model, self.now)
        if reset is not None:
            since = max(since, reset)
        kept = [t for t in self.state.remediations.get(model, []) if t > since]
        self.state.remediations[model] = kept
        return kept

    def _page_budget_exhausted(self, notice: _Notice, spent: Sequence[float]) -> None:
        """Page once per exhausted budget (identified by its first counted change)."""
        model = notice.incident.model
        if self.state.budget_paged.get(model) == spent[0]:
            return
        self.state.budget_paged[model] = spent[0]
        budget = self.policy.remediation.budget
        page = notice.request(
            actions_base.ActionKind.PAGE, f"{model}/remediation-budget/{spent[0]:.3f}", self.policy
        )
        why = (
            f"{len(spent)} automatic version changes in {budget.window_s / 3600:g} h (at most "
            f"{budget.max_changes}): automatic remediation of {model} is stopped until a human adds "
            f"reset_budget: [{{model: {model}, at: <RFC 3339 time>}}] to the override file"
        )
        self._emit(
            dataclasses.replace(
                page,
                severity=vocabulary.Severity.CRITICAL.value,
                reason=f"remediation budget of {model} exhausted",
                params={
                    **page.params,
                    "title": f"[critical] {model}: automatic remediation stopped",
                    "summary": why,
                    "budget_exhausted": True,
                },
            )
        )

    def end_split_incidents(self, serving: frozenset[str]) -> None:
        """Close what the split no longer updates (``split.settle``); whoever was told is told."""
        for ended in split.settle(self.state, serving):
            rule = next((r for r in self.policy.rules if r.id == ended.incident.rule_id), None)
            self._resolve(ended.incident, rule, ended.epoch_actions, why=ended.why)

    def _resolve(
        self,
        incident: incidents.IncidentState,
        rule: Rule | None,
        epoch_actions: Sequence[str],
        *,
        why: str = "has been clean for the configured number of windows",
    ) -> None:
        notified = {"alert", "page"} & set(epoch_actions)
        kind = actions_base.ActionKind.RESOLVE if notified else actions_base.ActionKind.LOG
        request = actions_base.ActionRequest(
            kind=kind,
            model_name=incident.model,
            idempotency_key=incidents.action_key(incident, "resolve"),
            incident_id=incident.incident_id,
            severity=vocabulary.Severity.NONE.value,
            reason=f"{incident.family} on {incident.group} cleared",
            model_version=incident.model_version,
            params={
                "event": "resolve",
                "title": f"[resolved] {incident.model}: {_family_words(incident.family)} on {incident.group}",
                "summary": f"{incident.incident_id} {why}.",
                "since": incident.opened_at,
                "family": incident.family,
                "labels": {"family": incident.family, "group": incident.group},
                **({"sinks": list(rule.sinks)} if rule is not None and rule.sinks is not None else {}),
            },
        )
        self.actions.append(request)

    def _emit(self, request: actions_base.ActionRequest) -> None:
        incident = self.state.incidents.get(request.incident_id)
        # A muted alert told no one: it must not make the incident's close send a RESOLVE for
        # something its receivers never saw opened.
        muted = (
            request.kind in overrides.NOTIFICATION_KINDS
            and self.overrides.skip_reason(request, self.now) is not None
        )
        if incident is not None and not muted and request.kind.value not in incident.actions_taken:
            incident.actions_taken.append(request.kind.value)
        self.actions.append(request)

    def add_forced_actions(self) -> None:
        for entry in self.overrides.forced(self.now):
            if entry.id in self.state.forced_done:
                continue
            model = entry.model or self.policy.model_name
            params: dict[str, Any] = {"forced": True, "force_id": entry.id}
            if entry.to_version is not None:
                params["to_version"] = entry.to_version
                if entry.action is actions_base.ActionKind.CANARY:
                    # For a canary the version named is the candidate to roll out.
                    params["candidate_version"] = entry.to_version
            if entry.by is not None:
                params["requested_by"] = entry.by
            self.actions.append(
                actions_base.ActionRequest(
                    kind=entry.action,
                    model_name=model,
                    idempotency_key=f"force/{entry.id}",
                    incident_id=entry.incident or f"{model}/operator/{entry.id}",
                    severity=entry.severity.value,
                    reason=entry.reason or f"forced by operator override {entry.id}",
                    params=params,
                )
            )
            self.state.forced_done.append(entry.id)
        del self.state.forced_done[:-MAX_FORCED_IDS_KEPT]


def _family_words(family: str) -> str:
    """How a notification names the family (the data-quality family as such)."""
    return "data quality" if family == QUALITY else family


def _held_reason(explaining: Sequence[str]) -> str:
    """``held: data quality incident <id> open`` (``incidents <id>, <id>`` for several)."""
    noun = "incident" if len(explaining) == 1 else "incidents"
    return f"held: data quality {noun} {', '.join(explaining)} open"


def _latest_version(state: PolicyState, units: Sequence[Unit]) -> str | None:
    versions = {u.model_version for u in units if u.model_version is not None}
    if not versions:
        return None
    return max(versions, key=lambda v: (state.versions_first_seen.get(v, 0.0), v))


@dataclasses.dataclass(frozen=True)
class _Notice:
    """What one opening/escalation is about; builds the requests (and the alert params)."""

    incident: incidents.IncidentState
    severity: vocabulary.Severity
    event: Literal["trigger", "update"]
    flapping: bool
    drifted: Sequence[_Judged]
    planned: Sequence[str]
    rule: Rule
    # Why remediation was held back (a data-quality incident explains the drift); "" when not.
    held: str = ""

    def request(
        self, kind: actions_base.ActionKind, key: str, policy: PolicyConfig
    ) -> actions_base.ActionRequest:
        incident = self.incident
        results = [j.unit.result for j in self.drifted]
        detectors = sorted({r.detector for r in results})
        features = sorted({r.feature for r in results if r.feature is not None})
        what = ", ".join(features[:5]) + (f" and {len(features) - 5} more" if len(features) > 5 else "")
        family = _family_words(incident.family)
        # A per-feature incident is named after its feature: no need to say it twice.
        reason = f"{family} on {incident.group}" + (f" ({what})" if what and what != incident.group else "")
        signals = (
            f"{vocabulary.counted(len(results), 'check')} failed"
            if incident.family == QUALITY
            else f"{vocabulary.counted(len(results), 'signal')} drifted"
        )
        flapping_note = " (flapping: opened repeatedly; held open until it settles)" if self.flapping else ""
        params: dict[str, Any] = {
            "event": self.event,
            "title": f"[{self.severity.value}] {incident.model}: {reason}{flapping_note}",
            "summary": (
                f"{signals} for {vocabulary.counted(incident.drift_streak, 'window')} in a row; "
                f"rule {self.rule.id}; planned: {', '.join(self.planned) or 'nothing'}."
                + (f" {self.held[0].upper()}{self.held[1:]}." if self.held else "")
            ),
            "drifted": [r.to_json() for r in results],
            "since": incident.opened_at,
            "action": ", ".join(self.planned),
            "override_hint": policy.override_hint.format(
                model=incident.model, incident_id=incident.incident_id
            ),
            "labels": {"family": incident.family, "group": incident.group, "rule": self.rule.id},
            "family": incident.family,
            "detectors": detectors,
            "features": features or [None],
            "rule_id": self.rule.id,
            "flapping": self.flapping,
            "epoch": incident.epoch,
        }
        if self.held:
            params["held"] = self.held
        if self.rule.sinks is not None:
            params["sinks"] = list(self.rule.sinks)
        if kind is actions_base.ActionKind.ROLLBACK:
            params["from_version"] = incident.model_version
        return actions_base.ActionRequest(
            kind=kind,
            model_name=incident.model,
            idempotency_key=key,
            incident_id=incident.incident_id,
            severity=self.severity.value,
            reason=reason,
            model_version=incident.model_version,
            params=params,
        )


def _overwhelming(drifted: list[_Judged], rule: Rule) -> bool:
    """Some drifted unit's test gave a p-value (after multiple-testing control) at or below the
    rule's ``strong_p_value``, or is a sequential test's alarm at a record (``strong_on_alarm``)."""
    limit = rule.strong_p_value
    return any(
        (limit is not None and j.p_value is not None and j.p_value <= limit)
        or (rule.strong_on_alarm and j.unit.result.alarm_at_record is not None)
        for j in drifted
    )

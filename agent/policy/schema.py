"""vocabulary.Severity policy: detector results in, severity and an action plan out - a pure function.

``decide(state, results, policy, overrides, now) -> (state, Decision)`` never does I/O and
never reads a clock: the agent checkpoints ``PolicyState`` (plain JSON) and a restart that
replays the same windows from the checkpoint gets the same decisions and idempotency keys.

How one window is judged (config/policy.yaml documents every knob):

1. Results are split into *units*: a dataset-level result with per-feature ``details`` counts
   as its details; any other result counts as itself.
2. Each unit goes to the first rule that matches it (model, family, detector, feature globs).
   A unit with ``current_size < min_samples`` does not count (not drift, not clean: no data is
   neither success nor failure). A threshold override recomputes the verdict from the score.
   With ``require_effect_size`` a drifted unit counts as drifted only if ``|effect_size|``
   reaches it (large samples make p-values fire on trivial shifts).
3. Units are grouped into incidents, one per (model, family, feature group[, segment]).
4. vocabulary.Severity of a drifted incident is the worst of: ``minor`` (anything drifted); the share of
   drifted features of a multi-feature detector, graded by ``drifted_share``; the largest
   score/threshold ratio of a drifted higher-is-drift score, graded by ``score_ratio``
   (p-value tests are graded by effect size instead - their ratios explode with sample size);
   the largest ``|effect_size|`` of a drifted unit (performance drop, error-rate rise, latency
   rise), graded by ``effect_size``.
5. Hysteresis and flapping control (``agent.incidents``) decide whether the incident opens,
   escalates, holds or resolves; only opening and escalation produce a plan.
6. The plan for a severity comes from ``plans``: by default minor -> log; moderate -> alert;
   severe -> alert + remediate; critical -> page + rollback. ``remediate`` is the explicit
   sudden-vs-gradual rule (``remediation``): the trigger is *sudden* when its family is one of
   ``sudden_families`` (performance, errors, latency), it reached severe within
   ``sudden_within_windows`` windows of its first drifted window, and (with
   ``require_new_version``) the version it fired on was first seen less than
   ``new_version_max_age_s`` ago with an older version seen before it. Sudden -> ``on_sudden``
   (rollback); otherwise -> ``on_gradual`` (retrain).
7. Remediation of a kind runs at most once per incident epoch and once per ``cooldown_s`` per
   model; operator-forced actions (overrides) bypass both.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import logging
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic
import yaml

from actions import base as actions_base
from actions import vocabulary
from agent import overrides
from agent.policy import incidents
from agent.settings import groups as settings_groups
from detectors import base as detectors_base

LOG = logging.getLogger(__name__)

IncidentState = incidents.IncidentState
DEFAULT_POLICY_PATH = settings_groups.DEFAULT_POLICY_PATH
MAX_FORCED_IDS_KEPT = 1000
PlanStep = Literal["log", "alert", "page", "rollback", "retrain", "remediate"]
RemediationKind = Literal["rollback", "retrain", "none"]


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Bands(_Model):
    """Lower bounds of a measure for each severity; null = this measure never grants that severity."""

    moderate: float | None = pydantic.Field(None, ge=0, description="Value at or above which it is moderate.")
    severe: float | None = pydantic.Field(None, ge=0, description="Value at or above which it is severe.")
    critical: float | None = pydantic.Field(None, ge=0, description="Value at or above which it is critical.")

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Bands:
        given = [(name, value) for name, value in self._levels() if value is not None]
        for (low_name, low), (high_name, high) in itertools.pairwise(given):
            if high < low:
                raise ValueError(
                    f"{high_name} ({high}) must be >= {low_name} ({low}): bands grow with severity"
                )
        return self

    def _levels(self) -> tuple[tuple[str, float | None], ...]:
        return (("moderate", self.moderate), ("severe", self.severe), ("critical", self.critical))

    def grade(self, value: float | None) -> vocabulary.Severity:
        if value is None or math.isnan(value):
            return vocabulary.Severity.NONE
        graded = vocabulary.Severity.NONE
        for name, bound in self._levels():
            if bound is not None and value >= bound:
                graded = vocabulary.Severity(name)
        return graded


class ActionPlans(_Model):
    """What each severity does. ``remediate`` means rollback or retrain by the sudden-vs-gradual rule."""

    minor: tuple[PlanStep, ...] = pydantic.Field(("log",), description="Plan for minor incidents.")
    moderate: tuple[PlanStep, ...] = pydantic.Field(("alert",), description="Plan for moderate incidents.")
    severe: tuple[PlanStep, ...] = pydantic.Field(
        ("alert", "remediate"), description="Plan for severe incidents."
    )
    critical: tuple[PlanStep, ...] = pydantic.Field(
        ("page", "rollback"), description="Plan for critical incidents."
    )

    def for_severity(self, severity: vocabulary.Severity) -> tuple[PlanStep, ...]:
        if severity is vocabulary.Severity.NONE:
            return ()
        plan: tuple[PlanStep, ...] = getattr(self, severity.value)
        return plan


class RemediationConfig(_Model):
    """The explicit sudden-vs-gradual rule behind the ``remediate`` plan step."""

    sudden_families: tuple[detectors_base.DetectorFamily, ...] = pydantic.Field(
        (
            detectors_base.DetectorFamily.PERFORMANCE,
            detectors_base.DetectorFamily.ERRORS,
            detectors_base.DetectorFamily.LATENCY,
        ),
        description="Families whose sudden regressions are blamed on the serving version.",
    )
    sudden_within_windows: int = pydantic.Field(
        2, ge=1, description="Sudden if severe within this many windows of the first drifted window."
    )
    require_new_version: bool = pydantic.Field(
        True, description="Sudden only when the version it fired on is new (see new_version_max_age_s)."
    )
    new_version_max_age_s: float = pydantic.Field(
        86_400.0,
        gt=0,
        description="A version is new when first seen less than this ago, after some other version.",
    )
    on_sudden: RemediationKind = pydantic.Field("rollback", description="Remediation of a sudden trigger.")
    on_gradual: RemediationKind = pydantic.Field("retrain", description="Remediation of a gradual trigger.")


class FlappingConfig(_Model):
    max_opens: int = pydantic.Field(
        3, ge=1, description="An incident opened more than this many times within window_s is flapping."
    )
    window_s: float = pydantic.Field(3600.0, gt=0, description="The flapping look-back window.")


class Rule(_Model):
    """Which results a rule governs (globs) and how they raise, clear and grade incidents."""

    id: str = pydantic.Field(min_length=1, description="Unique rule id; decisions name the rule that fired.")
    model: str = pydantic.Field("*", description="Model name glob.")
    family: str = pydantic.Field("*", description="Detector family glob (data_drift, performance, ...).")
    detector: str = pydantic.Field("*", description="Detector name glob.")
    feature: str = pydantic.Field(
        "*", description="Feature name glob; '*' also matches dataset-level results."
    )
    feature_group: str = pydantic.Field(
        "all", min_length=1, description="Incident group name for the results this rule matches."
    )
    incident_per_feature: bool = pydantic.Field(
        False, description="One incident per feature instead of one for the whole group."
    )
    raise_after: int = pydantic.Field(
        3, ge=1, description="Consecutive drifted windows before an incident opens."
    )
    critical_raise_after: int = pydantic.Field(
        1, ge=1, description="Consecutive critical windows before it opens (critical acts now)."
    )
    clear_after: int = pydantic.Field(3, ge=1, description="Consecutive clean windows before it resolves.")
    min_samples: int = pydantic.Field(
        100,
        ge=0,
        description="Results on fewer current rows than this do not count (neither drift nor clean).",
    )
    require_effect_size: float | None = pydantic.Field(
        None,
        ge=0,
        description="Drift counts only when |effect_size| reaches this (beside the p-value); "
        "null = not required. A result without an effect size cannot meet it.",
    )
    cooldown_s: float = pydantic.Field(
        3600.0, ge=0, description="Least time between two automatic remediations of one kind for a model."
    )
    drifted_share: Bands = pydantic.Field(
        Bands(moderate=0.2, severe=0.5), description="Grades the share of drifted features of one detector."
    )
    score_ratio: Bands = pydantic.Field(
        Bands(), description="Grades score/threshold of drifted higher-is-drift scores (not p-values)."
    )
    effect_size: Bands = pydantic.Field(Bands(), description="Grades |effect_size| of drifted results.")
    plans: ActionPlans | None = pydantic.Field(
        None, description="Plans for this rule; null = the policy's plans."
    )

    def matches(self, model: str, unit: Unit) -> bool:
        return (
            _glob(self.model, model)
            and _glob(self.family, unit.result.family.value)
            and _glob(self.detector, unit.result.detector)
            and _glob(self.feature, unit.result.feature)
        )


def default_rules() -> tuple[Rule, ...]:
    """The built-in rules (identical to config/policy.yaml; a test keeps them in step)."""
    return (
        Rule(
            id="performance",
            family="performance",
            effect_size=Bands(moderate=0.02, severe=0.05, critical=0.15),
        ),
        Rule(
            id="error-rate",
            family="errors",
            raise_after=2,
            effect_size=Bands(moderate=0.01, severe=0.05, critical=0.2),
        ),
        Rule(id="latency", family="latency", effect_size=Bands(moderate=0.2, severe=0.5, critical=1.0)),
        Rule(id="concept-drift", family="concept_drift", effect_size=Bands(moderate=0.02, severe=0.05)),
        Rule(id="prediction-drift", family="prediction_drift", score_ratio=Bands(moderate=2.0, severe=4.0)),
        Rule(
            id="data-drift",
            family="data_drift",
            drifted_share=Bands(moderate=0.2, severe=0.5),
            score_ratio=Bands(moderate=2.0, severe=4.0),
        ),
    )


DEFAULT_OVERRIDE_HINT = (
    "To silence this, add to the override file: mute: [{{model: {model}, until: <RFC 3339 time>}}]; "
    "to stop automatic actions: freeze: [{{model: {model}, until: ...}}]; "
    "to acknowledge: acknowledge: [{{incident: {incident_id}}}]"
)


class PolicyConfig(_Model):
    """The whole policy file."""

    model_name: str = pydantic.Field(
        "model", min_length=1, description="The watched model; the agent sets it from runtime.model_name."
    )
    rules: tuple[Rule, ...] = pydantic.Field(
        default_factory=default_rules,
        description="Ordered rules; each result goes to the first that matches.",
    )
    plans: ActionPlans = pydantic.Field(ActionPlans(), description="vocabulary.Severity -> actions.")
    remediation: RemediationConfig = pydantic.Field(
        RemediationConfig(), description="Sudden vs gradual rule."
    )
    flapping: FlappingConfig = pydantic.Field(FlappingConfig(), description="Flapping control.")
    override_hint: str = pydantic.Field(
        DEFAULT_OVERRIDE_HINT,
        description="How-to-override text put in notifications; {model} and {incident_id} are filled in.",
    )

    @pydantic.field_validator("override_hint")
    @classmethod
    def _hint_placeholders(cls, value: str) -> str:
        try:
            value.format(model="m", incident_id="i")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"cannot fill placeholder {exc}; use {{model}} and {{incident_id}} only, {{{{ }}}} for braces"
            ) from None
        return value

    @pydantic.model_validator(mode="after")
    def _unique_rule_ids(self) -> PolicyConfig:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.id in seen:
                raise ValueError(f"rules.{index}.id {rule.id!r} is used twice; rule ids must be unique")
            seen.add(rule.id)
        return self


class PolicyError(ValueError):
    """An invalid policy file; the message names each field and the fix."""


def load_policy(path: pathlib.Path, *, model_name: str | None = None) -> PolicyConfig:
    """Read and validate a policy YAML file."""
    if not path.exists() and path == DEFAULT_POLICY_PATH:
        LOG.info("no %s here; using the built-in policy (identical to the shipped file)", path)
        data: object = {}
    else:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from exc
    return parse_policy(data, str(path), model_name=model_name)


def parse_policy(data: object, source: str, *, model_name: str | None = None) -> PolicyConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(
            f"policy file {source} must hold a mapping at the top level, got {type(data).__name__}"
        )
    if model_name is not None:
        data = {**data, "model_name": model_name}
    try:
        return PolicyConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = [f"invalid policy file {source}:"]
        for item in exc.errors():
            field = ".".join(str(part) for part in item["loc"]) or "(root)"
            value = item.get("input")
            plain = item["type"] != "missing" and not isinstance(value, dict | list)
            shown = f"got {value!r}; " if plain else ""
            lines.append(f"  {field}: {shown}{item['msg']}")
        lines.append("Fix the named fields (every key is documented in config/policy.yaml).")
        raise PolicyError("\n".join(lines)) from exc


def action_kinds(policy: PolicyConfig) -> set[actions_base.ActionKind]:
    """Every action kind this policy can ask for (the executor checks it has a handler for each)."""
    steps: set[str] = set()
    for plans in [policy.plans, *(rule.plans for rule in policy.rules if rule.plans is not None)]:
        for severity in (
            vocabulary.Severity.MINOR,
            vocabulary.Severity.MODERATE,
            vocabulary.Severity.SEVERE,
            vocabulary.Severity.CRITICAL,
        ):
            steps.update(plans.for_severity(severity))
    if "remediate" in steps:
        steps.discard("remediate")
        steps.update(k for k in (policy.remediation.on_sudden, policy.remediation.on_gradual) if k != "none")
    kinds = {actions_base.ActionKind(step) for step in steps}
    if kinds & {actions_base.ActionKind.ALERT, actions_base.ActionKind.PAGE}:
        kinds.add(actions_base.ActionKind.RESOLVE)
    return kinds


# ---------------------------------------------------------------------------------------------
# State


@dataclasses.dataclass
class PolicyState:
    """Everything ``decide`` remembers between windows; ``to_json``/``from_json`` for checkpoints."""

    incidents: dict[str, IncidentState] = dataclasses.field(default_factory=dict)
    # Model version -> when the policy first saw it (the "new version" half of sudden-vs-gradual).
    versions_first_seen: dict[str, float] = dataclasses.field(default_factory=dict)
    # "<model>/<kind>" -> time of the last automatic remediation (cooldown).
    last_remediation: dict[str, float] = dataclasses.field(default_factory=dict)
    forced_done: list[str] = dataclasses.field(default_factory=list)
    windows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "incidents": {key: value.to_json() for key, value in self.incidents.items()},
            "versions_first_seen": dict(self.versions_first_seen),
            "last_remediation": dict(self.last_remediation),
            "forced_done": list(self.forced_done),
            "windows": self.windows,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyState:
        return cls(
            incidents={
                str(key): IncidentState.from_json(value)
                for key, value in dict(data.get("incidents", {})).items()
            },
            versions_first_seen={
                str(k): float(v) for k, v in dict(data.get("versions_first_seen", {})).items()
            },
            last_remediation={str(k): float(v) for k, v in dict(data.get("last_remediation", {})).items()},
            forced_done=[str(i) for i in data.get("forced_done", [])],
            windows=int(data.get("windows", 0)),
        )

    def open_incidents(self) -> list[IncidentState]:
        return [i for i in self.incidents.values() if i.status == "open"]


# ---------------------------------------------------------------------------------------------
# Decision


@dataclasses.dataclass(frozen=True)
class IncidentReport:
    """What one window did to one incident, with the numbers that graded it."""

    incident_id: str
    rule_id: str
    event: incidents.Event
    status: incidents.Status
    severity: vocabulary.Severity
    window_severity: vocabulary.Severity
    epoch: int
    units: int
    drifted: int
    insufficient: int
    below_effect_size: int
    drifted_share: float | None
    max_score_ratio: float | None
    max_effect_size: float | None
    flapping: bool
    acknowledged: bool

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["severity"] = self.severity.value
        out["window_severity"] = self.window_severity.value
        return out


@dataclasses.dataclass(frozen=True)
class Suppressed:
    kind: str
    incident_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Decision:
    time: float
    severity: vocabulary.Severity
    rule_id: str | None
    actions: tuple[actions_base.ActionRequest, ...]
    incidents: tuple[IncidentReport, ...]
    suppressed: tuple[Suppressed, ...]
    inputs: tuple[Mapping[str, Any], ...]
    unmatched: int
    overrides_in_force: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "decided_at": self.time,
            "severity": self.severity.value,
            "rule_id": self.rule_id,
            "actions": [
                {
                    "kind": a.kind.value,
                    "incident_id": a.incident_id,
                    "idempotency_key": a.idempotency_key,
                    "severity": a.severity,
                    "reason": a.reason,
                }
                for a in self.actions
            ],
            "incidents": [report.to_json() for report in self.incidents],
            "suppressed": [dataclasses.asdict(s) for s in self.suppressed],
            "inputs": [dict(i) for i in self.inputs],
            "unmatched": self.unmatched,
            "overrides": dict(self.overrides_in_force),
        }


# ---------------------------------------------------------------------------------------------
# Units and grading


@dataclasses.dataclass(frozen=True)
class Unit:
    """One verdict the policy counts: a result, or one per-feature detail of a dataset-level one."""

    result: detectors_base.DetectorResult
    segment: Mapping[str, str] | None
    model_version: str | None


@dataclasses.dataclass(frozen=True)
class _Judged:
    unit: Unit
    drifted: bool
    insufficient: bool
    below_effect_size: bool


@dataclasses.dataclass
class _Group:
    rule_index: int
    family: str
    group: str
    segment: Mapping[str, str] | None
    judged: list[_Judged] = dataclasses.field(default_factory=list)


def _glob(pattern: str, value: str | None) -> bool:
    if value is None:
        return pattern == "*"
    return fnmatch.fnmatchcase(value, pattern)


def units_of(results: Sequence[detectors_base.DetectorResult]) -> list[Unit]:
    units: list[Unit] = []
    for result in results:
        parts = result.details or (result,)
        for part in parts:
            units.append(
                Unit(
                    result=part,
                    segment=part.segment or result.segment,
                    model_version=part.model_version or result.model_version,
                )
            )
    return units


def _verdict_with_override(unit: Unit, threshold: float | None) -> bool:
    result = unit.result
    if threshold is None:
        return result.drifted
    if math.isnan(result.score):
        return False
    return result.score >= threshold if result.higher_is_drift else result.score < threshold


def _judge(unit: Unit, rule: Rule, model: str, state: overrides.OverrideState, now: float) -> _Judged:
    result = unit.result
    if result.current_size < rule.min_samples:
        return _Judged(unit, drifted=False, insufficient=True, below_effect_size=False)
    threshold = state.threshold(model=model, detector=result.detector, feature=result.feature, now=now)
    drifted = _verdict_with_override(unit, threshold)
    below = False
    if drifted and rule.require_effect_size is not None:
        effect = result.effect_size
        below = effect is None or math.isnan(effect) or abs(effect) < rule.require_effect_size
        drifted = not below
    return _Judged(unit, drifted=drifted, insufficient=False, below_effect_size=below)


@dataclasses.dataclass(frozen=True)
class _Grade:
    severity: vocabulary.Severity
    share: float | None
    ratio: float | None
    effect: float | None


def _grade(judged: Sequence[_Judged], rule: Rule) -> _Grade:
    counted = [j for j in judged if not j.insufficient]
    drifted = [j for j in counted if j.drifted]
    if not drifted:
        return _Grade(vocabulary.Severity.NONE, None, None, None)
    share = _worst_share(counted)
    ratios = [
        _ratio(j.unit.result)
        for j in drifted
        if j.unit.result.higher_is_drift and j.unit.result.threshold > 0
    ]
    effects = [
        abs(j.unit.result.effect_size)
        for j in drifted
        if j.unit.result.effect_size is not None and not math.isnan(j.unit.result.effect_size)
    ]
    ratio = max(ratios) if ratios else None
    effect = max(effects) if effects else None
    severity = vocabulary.worst(
        vocabulary.Severity.MINOR,
        rule.drifted_share.grade(share),
        rule.score_ratio.grade(ratio),
        rule.effect_size.grade(effect),
    )
    return _Grade(severity, share, ratio, effect)


def _ratio(result: detectors_base.DetectorResult) -> float:
    return result.score / result.threshold if not math.isnan(result.score) else math.inf


def _worst_share(counted: Sequence[_Judged]) -> float | None:
    """Largest share of drifted features among detectors that judged two or more features."""
    per_detector: dict[str, list[bool]] = {}
    for j in counted:
        per_detector.setdefault(j.unit.result.detector, []).append(j.drifted)
    shares = [sum(flags) / len(flags) for flags in per_detector.values() if len(flags) >= 2]
    return max(shares) if shares else None


# ---------------------------------------------------------------------------------------------
# decide


def decide(
    state: PolicyState,
    results: Sequence[detectors_base.DetectorResult],
    policy: PolicyConfig,
    overrides_state: overrides.OverrideState,
    now: float,
) -> tuple[PolicyState, Decision]:
    """Judge one window's results. Pure: ``state`` is not modified; the new state is returned."""
    new_state = PolicyState.from_json(state.to_json())
    new_state.windows += 1
    model = policy.model_name
    units = units_of(results)
    _note_versions(new_state, units, now)
    groups, unmatched = _group_units(units, policy, model, overrides_state, now)
    planner = _Planner(new_state, policy, overrides_state, now)
    reports = [planner.advance(incident_key, group) for incident_key, group in sorted(groups.items())]
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


def _note_versions(state: PolicyState, units: Sequence[Unit], now: float) -> None:
    for unit in units:
        if unit.model_version is not None and unit.model_version not in state.versions_first_seen:
            state.versions_first_seen[unit.model_version] = now


def _group_units(
    units: Sequence[Unit],
    policy: PolicyConfig,
    model: str,
    overrides_state: overrides.OverrideState,
    now: float,
) -> tuple[dict[str, _Group], int]:
    groups: dict[str, _Group] = {}
    unmatched = 0
    for unit in units:
        index = next((i for i, rule in enumerate(policy.rules) if rule.matches(model, unit)), None)
        if index is None:
            unmatched += 1
            continue
        rule = policy.rules[index]
        feature = unit.result.feature
        group_name = feature if rule.incident_per_feature and feature is not None else rule.feature_group
        family = unit.result.family.value
        key = incidents.incident_id(model, family, group_name, unit.segment)
        group = groups.setdefault(key, _Group(index, family, group_name, unit.segment))
        group.rule_index = min(group.rule_index, index)
        group.judged.append(_judge(unit, rule, model, overrides_state, now))
    return groups, unmatched


class _Planner:
    """Turns incident transitions into action requests (one instance per ``decide`` call)."""

    def __init__(
        self, state: PolicyState, policy: PolicyConfig, overrides_state: overrides.OverrideState, now: float
    ) -> None:
        self.state = state
        self.policy = policy
        self.overrides = overrides_state
        self.now = now
        self.actions: list[actions_base.ActionRequest] = []
        self.suppressed: list[Suppressed] = []

    def advance(self, key: str, group: _Group) -> IncidentReport:
        rule = self.policy.rules[group.rule_index]
        incident = self.state.incidents.get(key)
        if incident is None:
            incident = incidents.IncidentState(
                incident_id=key, model=self.policy.model_name, family=group.family, group=group.group
            )
            self.state.incidents[key] = incident
        grade = _grade(group.judged, rule)
        counted = [j for j in group.judged if not j.insufficient]
        acknowledged = self.overrides.acknowledged(key, self.now) is not None
        if not counted:
            event: incidents.Event = "insufficient"
        else:
            incident.rule_id = rule.id
            hysteresis = incidents.Hysteresis(
                raise_after=rule.raise_after,
                clear_after=rule.clear_after,
                critical_raise_after=rule.critical_raise_after,
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
            )
            event = transition.event
            if transition.notify is not vocabulary.Severity.NONE:
                self._plan(incident, rule, transition, drifted_units, acknowledged)
            elif event == "resolved":
                self._resolve(incident, closing_epoch_actions)
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
        )

    def _plan(
        self,
        incident: incidents.IncidentState,
        rule: Rule,
        transition: incidents.Transition,
        drifted: Sequence[_Judged],
        acknowledged: bool,
    ) -> None:
        severity = transition.notify
        plans = rule.plans or self.policy.plans
        steps = plans.for_severity(severity)
        kinds = [self._remediation_kind(incident) if step == "remediate" else step for step in steps]
        planned = [k for k in kinds if k != "none"]
        notice = _Notice(
            incident=incident,
            severity=severity,
            event="update" if transition.event == "escalated" else "trigger",
            flapping=transition.event == "flapping",
            drifted=drifted,
            planned=planned,
            rule=rule,
        )
        for kind in planned:
            if kind in ("alert", "page", "log"):
                self._notify(notice, actions_base.ActionKind(kind), acknowledged)
            else:
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
        # The version it acts on is part of the key: a fresh agent (empty state, epoch 1 again)
        # must not mistake an old rollback of another version, recorded in the registry's
        # journal under the same incident key, for this one.
        version = f"v{incident.model_version}" if incident.model_version else None
        request = notice.request(kind, incidents.action_key(incident, kind.value, version), self.policy)
        # A remediation an override will block does not start the cooldown: once the freeze ends
        # the next incident may act at once.
        if self.overrides.skip_reason(request, self.now) is None:
            self.state.last_remediation[cooldown_key] = self.now
        self._emit(request)

    def _resolve(self, incident: incidents.IncidentState, epoch_actions: Sequence[str]) -> None:
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
                "title": f"[resolved] {incident.model}: {incident.family} on {incident.group}",
                "summary": f"{incident.incident_id} has been clean for the configured number of windows.",
                "since": incident.opened_at,
                "family": incident.family,
                "labels": {"family": incident.family, "group": incident.group},
            },
        )
        self.actions.append(request)

    def _emit(self, request: actions_base.ActionRequest) -> None:
        incident = self.state.incidents.get(request.incident_id)
        if incident is not None and request.kind.value not in incident.actions_taken:
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

    def request(
        self, kind: actions_base.ActionKind, key: str, policy: PolicyConfig
    ) -> actions_base.ActionRequest:
        incident = self.incident
        results = [j.unit.result for j in self.drifted]
        detectors = sorted({r.detector for r in results})
        features = sorted({r.feature for r in results if r.feature is not None})
        what = ", ".join(features[:5]) + (f" and {len(features) - 5} more" if len(features) > 5 else "")
        reason = f"{incident.family} on {incident.group}" + (f" ({what})" if what else "")
        flapping_note = " (flapping: opened repeatedly; held open until it settles)" if self.flapping else ""
        params: dict[str, Any] = {
            "event": self.event,
            "title": f"[{self.severity.value}] {incident.model}: {reason}{flapping_note}",
            "summary": (
                f"{len(results)} signal(s) drifted for {incident.drift_streak} window(s) in a row; "
                f"rule {self.rule.id}; planned: {', '.join(self.planned) or 'nothing'}."
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

"""The policy file's schema: rules, severity bands, plans, the sudden-vs-gradual rule, flapping.

config/policy.yaml documents every key. ``load_policy``/``parse_policy`` validate a file and
reject it with a message naming each bad field and the fix; with no file at the default path
the built-in policy applies (``default_rules`` is identical to the shipped file).
"""

from __future__ import annotations

import itertools
import logging
import math
import pathlib
from typing import Literal

import pydantic
import yaml

from actions import base as actions_base
from actions import vocabulary
from agent import overrides
from agent.policy.multiple_testing import Method as MultipleTestingMethod
from agent.policy.units import Unit
from agent.settings import groups as settings_groups
from detectors import base as detectors_base

LOG = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = settings_groups.DEFAULT_POLICY_PATH
PlanStep = Literal["log", "alert", "page", "rollback", "retrain", "remediate"]
RemediationKind = Literal["rollback", "retrain", "none"]
# Plan steps that change the served model; data-quality incidents never take them.
REMEDIATION_STEPS: tuple[PlanStep, ...] = ("rollback", "retrain", "remediate")


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


class RemediationBudget(_Model):
    """How many automatic version changes (rollbacks and retrains) a model may get in a window.

    Past it, remediation stops and a human is paged once: a loop of rollback, retrain and canary
    (a model that keeps failing whatever the agent does) ends instead of churning versions.
    """

    max_changes: int = pydantic.Field(
        3, ge=0, description="Automatic rollbacks + retrains per model within window_s; 0 = never act."
    )
    window_s: float = pydantic.Field(86_400.0, gt=0, description="The look-back window of max_changes.")


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
    budget: RemediationBudget = pydantic.Field(
        default_factory=RemediationBudget,
        description="At most max_changes automatic version changes per model in window_s; then it pages "
        "once and stops acting until a human adds reset_budget to the override file.",
    )


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
    strong_p_value: float | None = pydantic.Field(
        1e-6,
        gt=0,
        lt=1,
        description="Overwhelming evidence: a drifted window of moderate or worse whose test gave a "
        "p-value at or below this opens after strong_raise_after windows. Each unit then fires falsely "
        "in at most this fraction of stationary windows. null = persistence only.",
    )
    strong_raise_after: int = pydantic.Field(
        1, ge=1, description="Consecutive drifted windows with overwhelming evidence before it opens."
    )
    material_raise_after: int = pydantic.Field(
        2,
        ge=1,
        description="Consecutive drifted windows before it opens when a drifted unit's effect size "
        "alone grades the window moderate or worse (effect_size bands: the material floors), e.g. a "
        "category's share or the p95 latency moving by more than the floor.",
    )
    strong_on_alarm: bool = pydantic.Field(
        True,
        description="A sequential test's alarm at a record (adwin, ddm, page_hinkley: fed every "
        "label-joined record) of moderate or worse is overwhelming evidence too; the test itself "
        "bounds its false alarms over the whole stream. false = such alarms need persistence.",
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
    sinks: tuple[str, ...] | None = pydantic.Field(
        None,
        description="Alert sinks (alerting.sinks names) that get this rule's alerts, pages and resolves "
        "instead of the routes, e.g. the data owner's channel for the quality checks of some features. "
        "null = the routes (alerting.alert_sinks / page_sinks; data_owner_sinks for quality).",
    )

    @pydantic.model_validator(mode="after")
    def _quality_only_notifies(self) -> Rule:
        if self.family != detectors_base.DetectorFamily.QUALITY.value or self.plans is None:
            return self
        for severity in ("minor", "moderate", "severe", "critical"):
            remediating = set(getattr(self.plans, severity)) & set(REMEDIATION_STEPS)
            if remediating:
                raise ValueError(
                    f"plans.{severity}: {sorted(remediating)} in a quality rule; a broken pipeline is fixed "
                    "upstream, not by rollback or retrain: use log, alert or page"
                )
        return self

    def matches(self, model: str, unit: Unit) -> bool:
        return (
            overrides.glob_matches(self.model, model)
            and overrides.glob_matches(self.family, unit.result.family.value)
            and overrides.glob_matches(self.detector, unit.result.detector)
            and overrides.glob_matches(self.feature, unit.result.feature)
        )


def default_rules() -> tuple[Rule, ...]:
    """The built-in rules (identical to config/policy.yaml; a test keeps them in step)."""
    return (
        # A broken pipeline is not drift: the data owner is alerted (paged when a fifth of the
        # values or more are affected), nothing is rolled back or retrained.
        Rule(
            id="data-quality",
            family="quality",
            feature_group="records",
            incident_per_feature=True,
            raise_after=2,
            drifted_share=Bands(),
            effect_size=Bands(moderate=0.05, severe=0.2),
            plans=ActionPlans(minor=("log",), moderate=("alert",), severe=("page",), critical=("page",)),
        ),
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
        # Moderate only: a sequential alarm alerts at once, and remediation waits for the windowed
        # performance check (a retrain on the first records after a change learns a blend).
        Rule(id="concept-drift", family="concept_drift", effect_size=Bands(moderate=0.02)),
        Rule(id="prediction-drift", family="prediction_drift", score_ratio=Bands(moderate=2.0, severe=4.0)),
        Rule(
            id="data-drift",
            family="data_drift",
            drifted_share=Bands(moderate=0.2, severe=0.5),
            score_ratio=Bands(moderate=2.0, severe=4.0),
            # A material shift of one feature alerts on its own (one drifted feature of many
            # is only a small share): Jensen-Shannon distance of a categorical's shares, normed
            # Wasserstein of a numeric column, or the test's effect size.
            effect_size=Bands(moderate=0.15),
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
    plans: ActionPlans = pydantic.Field(ActionPlans(), description="Severity -> actions.")
    remediation: RemediationConfig = pydantic.Field(
        RemediationConfig(), description="Sudden vs gradual rule."
    )
    flapping: FlappingConfig = pydantic.Field(FlappingConfig(), description="Flapping control.")
    multiple_testing: MultipleTestingMethod = pydantic.Field(
        "holm",
        description="How the per-feature p-values of one detector in one window are adjusted before "
        "features count as drifted: holm (the chance that any feature counts falsely stays below the "
        "test's threshold, however many features), benjamini_hochberg (false discovery rate), or none "
        "(each feature alone, as Evidently's column tests). Distance tests have no p-value and are not "
        "adjusted; detector verdicts themselves are unchanged.",
    )
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

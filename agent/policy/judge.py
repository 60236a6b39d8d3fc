"""Judging one window: each unit against its rule, units grouped into incidents, incidents graded.

* Each unit goes to the first rule that matches it (model, family, detector, feature globs).
  A unit with ``current_size < min_samples`` does not count (not drift, not clean: no data is
  neither success nor failure). A threshold override recomputes the verdict from the score.
  With ``require_effect_size`` a drifted unit counts as drifted only if ``|effect_size|``
  reaches it (large samples make p-values fire on trivial shifts).
* Units are grouped into incidents, one per (model, family, feature group[, segment]).
* Severity of a drifted incident is the worst of: ``minor`` (anything drifted); the share of
  drifted features of a multi-feature detector, graded by ``drifted_share``; the largest
  score/threshold ratio of a drifted higher-is-drift score, graded by ``score_ratio``
  (p-value tests are graded by effect size instead - their ratios explode with sample size);
  the largest ``|effect_size|`` of a drifted unit (performance drop, error-rate rise, latency
  rise), graded by ``effect_size``.

``_Group``, ``_Judged`` and ``_grade`` are private to the package rather than to this module:
the planner (``agent.policy.planner``) grades each group as it moves the group's incident.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from actions import vocabulary
from agent import overrides
from agent.policy import incidents, multiple_testing
from agent.policy.schema import PolicyConfig, Rule
from agent.policy.units import Unit
from detectors import base as detectors_base


@dataclasses.dataclass(frozen=True)
class _Judged:
    unit: Unit
    drifted: bool
    insufficient: bool
    below_effect_size: bool
    # The p-value after multiple-testing control (``PolicyConfig.multiple_testing``); else as tested.
    p_value: float | None = None


@dataclasses.dataclass
class _Group:
    rule_index: int
    family: str
    group: str
    segment: Mapping[str, str] | None
    judged: list[_Judged] = dataclasses.field(default_factory=list)


def _group_units(
    units: Sequence[Unit],
    policy: PolicyConfig,
    model: str,
    overrides_state: overrides.OverrideState,
    now: float,
) -> tuple[dict[str, _Group], int]:
    groups: dict[str, _Group] = {}
    unmatched = 0
    adjusted = multiple_testing.adjusted_p_values(units, policy.multiple_testing)
    for position, unit in enumerate(units):
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
        group.judged.append(
            _judge(unit, rule, model, overrides_state, now, adjusted_p=adjusted.get(position))
        )
    return groups, unmatched


def _verdict(unit: Unit, threshold: float | None, adjusted_p: float | None) -> bool:
    """The detector's verdict, unless an override threshold or an adjusted p-value recomputes it."""
    result = unit.result
    if threshold is None and adjusted_p is None:
        return result.drifted
    if adjusted_p is not None:  # a p-value test: its score is the p-value, drift below the threshold
        return adjusted_p < (threshold if threshold is not None else result.threshold)
    assert threshold is not None
    if math.isnan(result.score):
        return False
    return result.score >= threshold if result.higher_is_drift else result.score < threshold


def _judge(
    unit: Unit,
    rule: Rule,
    model: str,
    state: overrides.OverrideState,
    now: float,
    *,
    adjusted_p: float | None = None,
) -> _Judged:
    result = unit.result
    p_value = adjusted_p if adjusted_p is not None else result.p_value
    if result.current_size < rule.min_samples:
        return _Judged(unit, drifted=False, insufficient=True, below_effect_size=False, p_value=p_value)
    threshold = state.threshold(model=model, detector=result.detector, feature=result.feature, now=now)
    drifted = _verdict(unit, threshold, adjusted_p)
    below = False
    if drifted and rule.require_effect_size is not None:
        effect = result.effect_size
        below = effect is None or math.isnan(effect) or abs(effect) < rule.require_effect_size
        drifted = not below
    return _Judged(unit, drifted=drifted, insufficient=False, below_effect_size=below, p_value=p_value)


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

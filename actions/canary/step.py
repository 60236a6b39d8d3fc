"""The canary as a pure function: ``step(state, observations, config, now) -> (state, actions)``.

No I/O and no clock of its own, so tests drive it through any sequence directly, and the ticker
(``actions.canary.controller``) only loads, calls, applies and saves.

One tick, in order:

1. A finished canary only answers ``Wait``.
2. If something else changed what serves (``observations.serving_version`` is neither the stable
   version nor, while promoting, the candidate), the canary is ABANDONED without touching the
   target: fighting a human's or the rollback handler's change would make an incident worse.
3. Operator commands. ``abort`` rolls back and ``promote`` promotes at once; each acts once per
   command key (its ``id``; without an id, once per canary). ``pause`` is level-triggered: the
   canary holds its traffic and analyses nothing while the override says pause; when it no
   longer does (or says ``resume``), the step's interval starts afresh.
4. While PROMOTING: a complete rollout finishes the canary (PROMOTED), a failed one rolls back.
5. The split must be served: a FAILED rollout rolls back; a PROGRESSING one waits (and the
   analysis interval restarts once it completes, so cold starts never count as served time).
6. ``analysis_interval_s`` of served time at the step, then the data must suffice: fewer than
   ``min_samples`` canary records (or stable records, when a relative check is on and no
   earlier stable baseline exists) PAUSES the analysis - "waiting for data" - and counts nothing.
7. The check table (``actions.canary.checks``) runs; each check passes, fails (worse with
   significance and beyond its bound) or is inconclusive (below its own minimum sample). All
   pass: next step, or promote after the last one. None fails but some are inconclusive: the
   step waits for more data, as in 6 (never a pass). Any fails: one failed analysis.
   ``max_failed_checks`` failed analyses over the whole canary (not consecutive ones: fail,
   pass, fail is two) roll back; below it, the step is analysed again after a fresh interval.

Stable traffic may vanish at the last step (100%): relative checks then compare with the last
stable summary that had enough data (``state.baseline``).
"""

from __future__ import annotations

import dataclasses

from actions.canary import checks as checks_mod
from actions.canary import config as config_mod
from actions.canary import state as state_mod
from actions.targets import base as target_base

Phase = state_mod.Phase
Result = tuple[state_mod.CanaryState, list[state_mod.CanaryAction]]


def begin(
    *,
    canary_id: str,
    model_name: str,
    stable_version: str,
    candidate_version: str,
    config: config_mod.CanaryConfig,
    now: float,
    stable_model_uri: str = "",
    candidate_model_uri: str = "",
    aliases_before: dict[str, str] | None = None,
    shares: tuple[target_base.ServedShare, ...] = (),
) -> Result:
    """A new canary at the first step, and the action that sends its traffic there."""
    if not candidate_version or candidate_version == stable_version:
        raise ValueError(
            f"candidate_version {candidate_version!r} must be a version other than the stable one "
            f"({stable_version!r})"
        )
    state = state_mod.CanaryState(
        canary_id=canary_id,
        model_name=model_name,
        stable_version=stable_version,
        candidate_version=candidate_version,
        steps=tuple(config.steps),
        started_at=now,
        step_started_at=now,
        ready_at=now,
        stable_model_uri=stable_model_uri,
        candidate_model_uri=candidate_model_uri,
        aliases_before=dict(aliases_before or {}),
        shares=shares,
    )
    first = shares[0].describe() if shares else f"{config.steps[0]}%"
    state = state.with_event(now, "started", f"{stable_version} -> {candidate_version} at {first}")
    return state, [state_mod.SetTraffic(config.steps[0])]


def step(
    state: state_mod.CanaryState,
    observations: state_mod.Observations,
    config: config_mod.CanaryConfig,
    now: float,
) -> Result:
    if state.finished:
        return state, [state_mod.Wait(f"canary {state.canary_id} is {state.phase.value}")]
    moved = _moved_elsewhere(state, observations)
    if moved is not None:
        return _finish(state, now, Phase.ABANDONED, moved, rollback=False)
    state, commanded = _one_shot_command(state, observations.command, now)
    if commanded is not None:
        return commanded
    if state.phase is Phase.PROMOTING:
        return _promotion_rollout(state, observations, config, now)
    pause = observations.command is not None and observations.command.kind == "pause"
    if pause or state.phase is Phase.PAUSED:
        state, paused = _pause_or_resume(state, pause, now)
        if paused is not None:
            return paused
    return _progress(state, observations, config, now)


def _one_shot_command(
    state: state_mod.CanaryState, command: state_mod.Command | None, now: float
) -> tuple[state_mod.CanaryState, Result | None]:
    """abort / promote, each acted on once per command key."""
    if command is None or command.kind not in ("abort", "promote") or command.key in state.handled_commands:
        return state, None
    state = dataclasses.replace(state, handled_commands=(*state.handled_commands, command.key))
    who = f"operator command {command.kind}" + (f" (id {command.id})" if command.id else "")
    if command.kind == "abort":
        return state, _finish(state, now, Phase.ROLLED_BACK, f"aborted by {who}", rollback=True)
    if state.phase is Phase.PROMOTING:
        return state, None  # already on its way
    return state, _promote(state, now, f"promoted early by {who}")


def _pause_or_resume(
    state: state_mod.CanaryState, pause: bool, now: float
) -> tuple[state_mod.CanaryState, Result | None]:
    """Paused while the override says pause; the interval restarts when it no longer does."""
    wait = state_mod.Wait("paused by an operator")
    if pause and state.phase is Phase.PAUSED:
        return state, (state, [wait])
    if pause:
        paused = dataclasses.replace(state, phase=Phase.PAUSED, waiting=wait.reason, waiting_since=None)
        paused = paused.with_event(now, "paused", f"at {state.percent}%")
        return paused, (paused, [wait])
    resumed = dataclasses.replace(state, phase=Phase.PROGRESSING, ready_at=now, waiting="")
    return resumed.with_event(now, "resumed", f"at {state.percent}%; the interval starts again"), None


def _moved_elsewhere(state: state_mod.CanaryState, observations: state_mod.Observations) -> str | None:
    serving = observations.serving_version
    expected = state.candidate_version if state.phase is Phase.PROMOTING else state.stable_version
    if serving is None or serving == expected:
        return None
    return (
        f"version {serving} serves now, not {expected}: something else changed the target during the "
        "canary; leaving it alone"
    )


def _promotion_rollout(
    state: state_mod.CanaryState,
    observations: state_mod.Observations,
    config: config_mod.CanaryConfig,
    now: float,
) -> Result:
    if observations.rollout is target_base.RolloutPhase.FAILED:
        reason = f"the promoted version's rollout failed: {observations.rollout_message}"
        return _finish(state, now, Phase.ROLLED_BACK, reason, rollback=True)
    if observations.rollout is target_base.RolloutPhase.PROGRESSING:
        return _waiting(state, now, f"promotion rolling out: {observations.rollout_message}", config)
    return _finish(state, now, Phase.PROMOTED, state.reason or "all steps passed", rollback=False)


def _progress(  # noqa: PLR0911 - one return per outcome of the tick, in order
    state: state_mod.CanaryState,
    observations: state_mod.Observations,
    config: config_mod.CanaryConfig,
    now: float,
) -> Result:
    if observations.rollout is target_base.RolloutPhase.FAILED:
        reason = f"the canary's rollout at {state.percent}% failed: {observations.rollout_message}"
        return _finish(state, now, Phase.ROLLED_BACK, reason, rollback=True)
    if observations.rollout is target_base.RolloutPhase.PROGRESSING:
        state = dataclasses.replace(state, ready_at=None)
        return _waiting(state, now, f"waiting for the rollout: {observations.rollout_message}", config)
    if state.ready_at is None:
        state = dataclasses.replace(state, ready_at=now)
    assert state.ready_at is not None
    remaining = state.ready_at + config.analysis_interval_s - now
    if remaining > 0:
        state = dataclasses.replace(state, waiting="", waiting_since=None)
        return state, [state_mod.Wait(f"analysis at {state.percent}% in {remaining:.0f} s")]
    inputs, missing = _inputs(state, observations, config)
    if inputs is None:
        return _waiting(state, now, f"waiting for data: {missing}", config)
    state = dataclasses.replace(state, baseline=inputs.stable)
    results = checks_mod.evaluate(inputs, config)
    analysis = state_mod.Analysis(now, state.percent, all(r.passed for r in results), results)
    state = dataclasses.replace(state, last_analysis=analysis)
    if analysis.passed:
        state = dataclasses.replace(state, waiting="", waiting_since=None, stall_alerted=False)
        return _advance(state, now)
    if analysis.failures:
        state = dataclasses.replace(state, waiting="", waiting_since=None, stall_alerted=False)
        return _failed(state, analysis, config, now)
    # Inconclusive (too few samples for some check): the step holds its traffic and keeps
    # gathering; the interval is not restarted, so the next analysis sees more data.
    what = "; ".join(f"{check.name}: {check.note}" for check in analysis.inconclusive)
    return _waiting(state, now, f"inconclusive at {state.percent}%: {what}", config)


def _inputs(
    state: state_mod.CanaryState, observations: state_mod.Observations, config: config_mod.CanaryConfig
) -> tuple[checks_mod.Inputs | None, str]:
    canary = observations.canary
    if canary is None or canary.count < config.min_samples:
        count = 0 if canary is None else canary.count
        return None, f"{count} canary records, min_samples is {config.min_samples}"
    stable = observations.stable
    if stable is None or stable.count < config.min_samples:
        stable = state.baseline  # e.g. at 100% no stable traffic is left: the last good summary
        if stable is None and checks_mod.needs_stable(config.checks):
            count = 0 if observations.stable is None else observations.stable.count
            return None, f"{count} stable records, min_samples is {config.min_samples}"
    return checks_mod.Inputs(canary, stable, observations), ""


def _advance(state: state_mod.CanaryState, now: float) -> Result:
    if state.step_index + 1 >= len(state.steps):
        return _promote(state, now, f"all {len(state.steps)} steps passed")
    index = state.step_index + 1
    percent = state.steps[index]
    moved = dataclasses.replace(state, step_index=index, step_started_at=now, ready_at=now)
    share = moved.share.describe() if moved.share is not None else f"{percent}%"
    return moved.with_event(now, "advanced", f"{state.percent}% passed; now {share}"), [
        state_mod.SetTraffic(percent)
    ]


def _failed(
    state: state_mod.CanaryState, analysis: state_mod.Analysis, config: config_mod.CanaryConfig, now: float
) -> Result:
    failed = state.failed_checks + 1
    what = "; ".join(f"{check.name}: {check.note}" for check in analysis.failures)
    summary = f"analysis at {state.percent}% failed ({failed} of {config.max_failed_checks}): {what}"
    state = dataclasses.replace(state, failed_checks=failed).with_event(now, "check_failed", summary)
    if failed >= config.max_failed_checks:
        return _finish(state, now, Phase.ROLLED_BACK, summary, rollback=True)
    state = dataclasses.replace(state, ready_at=now)  # the same step again, on fresh data
    return state, [state_mod.Wait(summary)]


def _promote(state: state_mod.CanaryState, now: float, reason: str) -> Result:
    promoting = dataclasses.replace(state, phase=Phase.PROMOTING, reason=reason, waiting="")
    return promoting.with_event(now, "promoting", reason), [state_mod.Promote(state.candidate_version, now)]


def _finish(state: state_mod.CanaryState, now: float, phase: Phase, reason: str, *, rollback: bool) -> Result:
    done = dataclasses.replace(state, phase=phase, finished_at=now, reason=reason, waiting="")
    actions: list[state_mod.CanaryAction] = [state_mod.Rollback(reason, now)] if rollback else []
    severity = "minor" if phase is Phase.PROMOTED else "severe"
    message = f"canary {state.candidate_version} (stable {state.stable_version}) {phase.value}: {reason}"
    actions.append(state_mod.Alert(phase.value, message, severity))
    return done.with_event(now, phase.value, reason), actions


def _waiting(
    state: state_mod.CanaryState, now: float, reason: str, config: config_mod.CanaryConfig
) -> Result:
    since = state.waiting_since if state.waiting_since is not None else now
    state = dataclasses.replace(state, waiting=reason, waiting_since=since)
    actions: list[state_mod.CanaryAction] = [state_mod.Wait(reason)]
    limit = config.stall_alert_after_s
    if limit is not None and not state.stall_alerted and now - since >= limit:
        # Waiting is not failing, but a canary stuck for an hour needs a human to look.
        message = (
            f"canary {state.candidate_version} at {state.percent}% has waited {now - since:.0f} s: {reason}"
        )
        state = dataclasses.replace(state, stall_alerted=True).with_event(now, "stalled", reason)
        actions.append(state_mod.Alert("stalled", message, "moderate"))
    return state, actions

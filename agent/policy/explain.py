"""Why a window did or did not page: one sentence per incident it touched, from its report."""

from __future__ import annotations

from actions import vocabulary
from agent.policy.state import Decision, IncidentReport


def _graded(report: IncidentReport) -> str:
    parts = []
    if report.drifted_share is not None:
        parts.append(f"drifted share {report.drifted_share:.2f}")
    if report.max_score_ratio is not None:
        parts.append(f"score/threshold {report.max_score_ratio:.2f}")
    if report.max_effect_size is not None:
        parts.append(f"effect {report.max_effect_size:.3f}")
    graded = f"window graded {report.window_severity.value}"
    return f"{graded} ({', '.join(parts)})" if parts else graded


# What each incident event says; filled from the report (``graded``: how the window was graded).
_SAID = {
    "insufficient": "not counted: every result had fewer rows than the rule's min_samples",
    "pending": "{drifted} of {units} drifted, {graded}; {streak} in a row of the {needed} "
    "this evidence needs to open",
    "opened": "opened at {severity} after {streak} in a row, {graded}",
    "flapping": "opened again too often: flapping, held open at {severity}, notified once, {graded}",
    "escalated": "escalated to {severity}, {graded}: notified again",
    "resolved": "resolved after clean windows",
    "held": "clean, but held open while it is flapping",
    "none": "clean",
}


def why(report: IncidentReport) -> str:
    """One sentence: what this window did to the incident and why (rule, persistence, grading)."""
    event: str = report.event
    if event == "updated":
        clean = report.window_severity is vocabulary.Severity.NONE
        said = (
            "clean window while open; it resolves after the rule's clear_after clean windows"
            if clean
            else "still open at {severity}, {graded}; no new notification"
        )
    else:
        said = _SAID[event]
    if event == "none" and report.below_effect_size:
        said += f"; {report.below_effect_size} drifted result(s) below require_effect_size"
    text = said.format(
        drifted=report.drifted,
        units=report.units,
        graded=_graded(report),
        streak=vocabulary.counted(report.streak, "drifted window"),
        needed=report.needed,
        severity=report.severity.value,
    )
    return f"{report.incident_id} (rule {report.rule_id}): {text}"


def explain(decision: Decision) -> list[str]:
    """Why, for every incident the window moved, and for every action held back."""
    lines = [
        why(report) for report in decision.incidents if report.event != "none" or report.below_effect_size
    ]
    if any(report.acknowledged for report in decision.incidents):
        lines.append("acknowledged incidents notify nobody except on escalation to critical")
    lines.extend(
        f"{s.kind} for {s.incident_id} {s.reason}"
        if s.reason.startswith("held: ")
        else f"{s.kind} for {s.incident_id} held back: {s.reason}"
        for s in decision.suppressed
    )
    return lines

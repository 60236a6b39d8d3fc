"""Slack incoming webhook: a Block Kit message with a plain ``text`` for notifications.

Slack's documented limits, which the renderer keeps (longer content is cut with a marker, the
least-drifted signals first):
- a message holds at most 50 blocks;
- a header's plain_text at most 150 characters;
- a section's text at most 3000 characters; at most 10 fields of at most 2000 characters each;
- a context block at most 10 elements;
- ``text`` is what mobile and desktop notifications show when blocks are present, so it is always
  set; Slack truncates it at 40,000 characters, this renderer keeps it within 3000.
Slack also rejects a message whose blocks are long in total (``msg_blocks_too_long``) at around
13k characters, below any documented limit, so the drift list shares a smaller budget.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from actions import vocabulary
from actions.alerts import base, notification, secret_refs
from actions.alerts import transport as transport_mod

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
MAX_FIELDS = 10
CONTEXT_ELEMENTS = 10
TEXT_CHARS = 3000
DRIFT_LIST_CHARS = 8000  # total over the drift sections; keeps the whole message well below ~13k
TRUNCATION_MARKER = "… [truncated]"

_SEVERITY_EMOJI = {
    vocabulary.Severity.NONE: ":white_circle:",
    vocabulary.Severity.MINOR: ":large_blue_circle:",
    vocabulary.Severity.MODERATE: ":large_yellow_circle:",
    vocabulary.Severity.SEVERE: ":large_orange_circle:",
    vocabulary.Severity.CRITICAL: ":red_circle:",
}
_EVENT_PREFIX = {
    notification.Event.TRIGGER: "",
    notification.Event.UPDATE: "Updated: ",
    notification.Event.RESOLVE: "Resolved: ",
    notification.Event.CHANGE: "Change: ",
}


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked so nobody mistakes it for the whole."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters; feature names are user data.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _since(epoch: float | None) -> str:
    if epoch is None:
        return "n/a"
    fallback = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    # Slack renders the date token in each reader's time zone; the fallback shows where it cannot.
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def drift_line(item: notification.DriftItem) -> str:
    feature = f"`{escape(item.feature)}`" if item.feature is not None else "_(dataset)_"
    comparison = ">" if item.higher_is_drift else "<"
    parts = [
        f"• {feature} {escape(item.detector)}: {_number(item.score)} {comparison} {_number(item.threshold)}"
    ]
    if item.p_value is not None:
        parts.append(f"p={_number(item.p_value)}")
    if item.effect_size is not None:
        parts.append(f"effect={_number(item.effect_size)}")
    return clip(", ".join(parts), SECTION_CHARS)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_CHARS)}}


def _fields(n: notification.Notification) -> dict[str, Any]:
    pairs = [
        ("Model", escape(n.model_name)),
        ("Version", escape(n.model_version or "n/a")),
        ("Severity", f"{_SEVERITY_EMOJI[n.severity]} {n.severity.value}"),
        ("Event", n.event.value),
        ("Since", _since(n.since)),
        ("Incident", f"`{escape(n.incident_id)}`"),
    ]
    fields = [{"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", FIELD_CHARS)} for label, value in pairs]
    return {"type": "section", "fields": fields[:MAX_FIELDS]}


def _drift_sections(items: tuple[notification.DriftItem, ...], max_sections: int) -> tuple[list[str], int]:
    """Drift lines packed into at most ``max_sections`` texts; returns them and how many were left out."""
    sections: list[str] = []
    current = f"*What drifted ({len(items)} signal{'s' if len(items) != 1 else ''}, worst first)*"
    budget = DRIFT_LIST_CHARS - len(current)
    shown = 0
    for item in items:
        line = drift_line(item)
        if len(line) + 1 > budget:
            break
        if len(current) + 1 + len(line) > SECTION_CHARS:
            if len(sections) + 1 >= max_sections:
                break
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}"
        budget -= len(line) + 1
        shown += 1
    sections.append(current)
    return sections, len(items) - shown


def render(n: notification.Notification) -> dict[str, Any]:
    """The webhook body: ``text`` plus blocks within Slack's limits."""
    emoji = _SEVERITY_EMOJI[n.severity]
    heading = f"{_EVENT_PREFIX[n.event]}{n.title}"
    head: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(heading, HEADER_CHARS), "emoji": True},
        },
        _fields(n),
        _section(escape(n.summary)),
    ]
    tail: list[dict[str, Any]] = []
    if n.action:
        tail.append(_section(f"*Agent action:* {escape(n.action)}"))
    if n.override_hint:
        tail.append(_section(f"*Override:* {escape(n.override_hint)}"))
    context = [f"drift-agent · incident `{escape(n.incident_id)}`"]
    if n.links.dashboard:
        context.append(f"<{n.links.dashboard}|Dashboard>")
    if n.links.runbook:
        context.append(f"<{n.links.runbook}|Runbook>")
    tail.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": clip(t, SECTION_CHARS)} for t in context][
                :CONTEXT_ELEMENTS
            ],
        }
    )
    middle: list[dict[str, Any]] = []
    if n.drifted:
        room = MAX_BLOCKS - len(head) - len(tail) - 1  # one block kept for the "left out" note
        texts, left_out = _drift_sections(n.worst_first(), room)
        middle = [_section(text) for text in texts]
        if left_out:
            more = vocabulary.counted(left_out, "more drifted signal")
            note = f"…and {more} not shown {TRUNCATION_MARKER}; see the dashboard."
            middle.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    # A summary that only repeats the title (canary verdicts) is not said twice.
    repeats = not n.summary or n.title.endswith(n.summary)
    text = f"{emoji} {heading}" if repeats else f"{emoji} {heading} — {n.summary}"
    return {"text": clip(text, TEXT_CHARS), "blocks": head + middle + tail}


class SlackSink(base.HttpSink):
    def __init__(self, name: str, options: base.SinkOptions, *, webhook_url: secret_refs.SecretRef) -> None:
        super().__init__(name, options)
        self._webhook_url = webhook_url

    def payload(self, n: notification.Notification) -> Mapping[str, Any] | None:
        return render(n)

    def request(self, n: notification.Notification, body: Mapping[str, Any]) -> transport_mod.HttpRequest:
        url = self._webhook_url.read(self._runtime.environ).value
        return transport_mod.HttpRequest("POST", url, dict(base.JSON_HEADERS), base.json_body(body))

"""The demo's live terminal view and its closing timeline (rich)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from agent import app
    from demo import server as server_mod
    from demo import timeline

console = Console()


def _latest_actions(said: Iterable[str]) -> str:
    """The last actions in words, repeats folded: "canary in progress (3 updates)", not three cells."""
    folded: list[list[Any]] = []
    for raw in said:
        text = raw.replace("_", " ")
        if folded and folded[-1][0] == text:
            folded[-1][1] += 1
        else:
            folded.append([text, 1])
    return "; ".join(text if n == 1 else f"{text} ({n} updates)" for text, n in folded) or "-"


def plain_say(line: str) -> None:
    # soft_wrap: a line is never cut at the terminal's width mid-sentence (logs, CI, pipes).
    console.print(f"{time.strftime('%H:%M:%S')} {line}", highlight=False, soft_wrap=True, emoji=False)


class View:
    """A status table refreshed four times a second, above the story's recent lines."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=12)
        self.lock = threading.Lock()
        self.observer: timeline.Observer | None = None
        self.server: server_mod.SimulatedServer | None = None
        self.agent: app.Agent | None = None
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self._rate = 0.0

    def say(self, line: str) -> None:
        with self.lock:
            self.lines.append(f"{time.strftime('%H:%M:%S')} {line}")

    def attach(
        self, observer: timeline.Observer, server: server_mod.SimulatedServer, agent: app.Agent
    ) -> None:
        self.observer, self.server, self.agent = observer, server, agent

    def _status(self) -> Table:
        table = Table(box=box.SIMPLE_HEAVY, title="drift-agent demo", expand=True)
        for column in (
            "records/s",
            "records",
            "windows",
            "serving",
            "canary",
            "data drift share",
            "severity",
            "actions",
        ):
            table.add_column(column)
        if self.agent is None or self.observer is None or self.server is None:
            table.add_row("-", "-", "-", "-", "-", "-", "starting", "-")
            return table
        now, records = time.monotonic(), self.agent.records_ingested
        last_at, last_records = self._last
        if now - last_at >= 1.0:
            self._rate = (records - last_records) / (now - last_at)
            self._last = (now, records)
        share, severity = "-", "none"
        with self.observer.lock:
            recent = list(self.observer.evaluations[-20:])
            actions = [done for _, done in self.observer.actions[-3:]]
        for _, evaluation in reversed(recent):
            drift = next((r for r in evaluation.results if r.detector == "data_drift"), None)
            if drift is not None and share == "-":
                share = f"{drift.score:.2f}"
            if evaluation.decision is not None and severity == "none":
                severity = str(evaluation.decision.severity)
        with self.server.lock:
            serving = ", ".join(f"v{v}: {n}" for v, n in sorted(self.server.stats.per_version.items()))
            split = self.server.stats.splits[-1] if self.server.stats.splits else None
        canary = f"v{split[1]} at {split[2]}%" if split is not None and split[1] is not None else "-"
        action_text = _latest_actions(f"{d.request.kind.value} {d.outcome.status.value}" for d in actions)
        table.add_row(
            f"{self._rate:,.0f}",
            f"{records:,}",
            str(self.observer.windows),
            serving,
            canary,
            share,
            severity,
            action_text,
        )
        return table

    def render(self) -> Group:
        with self.lock:
            lines = Text("\n".join(self.lines))
        return Group(self._status(), lines)

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with Live(self.render(), console=console, refresh_per_second=4, transient=False) as live:
            stop = threading.Event()

            def refresh() -> None:
                while not stop.wait(0.25):
                    live.update(self.render())

            thread = threading.Thread(target=refresh, name="demo-ui", daemon=True)
            thread.start()
            try:
                yield
            finally:
                stop.set()
                thread.join(timeout=1)
                live.update(self.render())


def print_timeline(result: timeline.StoryResult, elapsed_s: float) -> None:
    table = Table(
        title="timeline (seconds after each injection)",
        box=box.SIMPLE_HEAVY,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("event", no_wrap=True)
    for column in ("at record", "detected", "acted", "recovered"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("what the agent did", ratio=1)
    table.add_column("result", no_wrap=True, min_width=6)
    for event in result.events:
        table.add_row(
            event.name,
            str(event.injected_index),
            event.since_injection(event.detected_at),
            event.since_injection(event.acted_at),
            event.since_injection(event.recovered_at),
            event.action_detail or event.expected_action,
            "[green]ok[/green]" if event.passed else "[red]FAILED[/red]",
        )
    console.print(table)
    for event in result.events:
        for note in event.notes:
            console.print(f"  {event.name}: {note}", highlight=False)
    console.print(
        f"notifications received by the local Slack/PagerDuty stand-in: {len(result.notifications)}"
    )
    if result.report_path is not None:
        console.print(
            f"Evidently drift report for the window that triggered data_drift: {result.report_path}"
        )
    console.print(f"metrics were served at {result.metrics_url} while the demo ran; total {elapsed_s:.0f}s")

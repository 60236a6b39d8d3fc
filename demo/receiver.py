"""A local stand-in for Slack's and PagerDuty's hosted endpoints: records and prints what they
would receive. The agent's real sinks post to it over HTTP, wire format unchanged."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

Printer = Callable[[str], None]


# Where the data owner's Slack webhook posts (the data-quality route).
DATA_OWNER_PATH = "/data-owner/"


@dataclasses.dataclass(frozen=True)
class Received:
    at: float
    path: str
    body: dict[str, Any]

    @property
    def service(self) -> str:
        if self.path.startswith("/v2/"):
            return "pagerduty"
        return "data-owner" if self.path.startswith(DATA_OWNER_PATH) else "slack"

    def headline(self) -> str:
        if self.service == "pagerduty":
            payload = self.body.get("payload", {})
            summary = payload.get("summary", "") if isinstance(payload, dict) else ""
            # A resolve carries no payload: name the incident it closes.
            said = summary or f"incident {self.body.get('dedup_key', '?')}"
            return f"PagerDuty {self.body.get('event_action', '?')}: {said}"
        text = str(self.body.get("text", ""))
        for code, emoji in _EMOJI.items():
            text = text.replace(code, emoji)
        channel = "Slack #data-owners" if self.service == "data-owner" else "Slack"
        return f"{channel}: {text}"


# Slack's shortcodes the agent uses, as the terminal shows them (Slack itself renders the codes).
_EMOJI = {
    ":red_circle:": "🔴",
    ":large_red_circle:": "🔴",
    ":large_orange_circle:": "🟠",
    ":large_yellow_circle:": "🟡",
    ":large_blue_circle:": "🔵",
    ":large_green_circle:": "🟢",
    ":white_circle:": "⚪",
}


class AlertReceiver:
    """Answers 202 to every POST, keeps the bodies, and hands a one-line summary to ``printer``."""

    def __init__(self, printer: Printer | None = None) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._printer = printer
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {"unparsed": raw.decode("utf-8", "replace")}
                owner.add(
                    Received(time.time(), self.path, body if isinstance(body, dict) else {"body": body})
                )
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"success"}')

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)
        if self._printer is not None:
            self._printer(item.headline())

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A local HTTP receiver standing in for Slack / PagerDuty / webhook endpoints.

It records every request exactly as it arrived (method, path, headers, raw body) and answers
from a script of responses, so tests check the wire format and drive retries with real HTTP.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

WAIT_S = 10.0  # upper bound on waiting for a request; a pass never waits this long


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Reply] = []
        # Per path prefix: replies for the requests to that path only (sinks post concurrently).
        self._scripts_by_path: dict[str, list[Reply]] = {}
        self._default = Reply()
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                reply = receiver._record(recorded)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="test-receiver",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply, path: str | None = None) -> None:
        """Answer the next requests (to paths starting with ``path``, if given) with these, in
        order; then with the default (200 ok)."""
        with self._changed:
            if path is None:
                self._script.extend(replies)
            else:
                self._scripts_by_path.setdefault(path, []).extend(replies)

    def set_default(self, reply: Reply) -> None:
        with self._changed:
            self._default = reply

    def _record(self, recorded: Recorded) -> Reply:
        with self._changed:
            self.requests.append(recorded)
            self._changed.notify_all()
            for prefix, replies in self._scripts_by_path.items():
                if replies and recorded.path.startswith(prefix):
                    return replies.pop(0)
            return self._script.pop(0) if self._script else self._default

    def wait_for(self, count: int, timeout_s: float = WAIT_S) -> list[Recorded]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclasses.dataclass
class FakeClocks:
    """Injected time: ``sleep`` records the wait and advances both clocks instantly."""

    start_wall: float = 1_700_000_000.0
    now: float = 0.0
    sleeps: list[float] = dataclasses.field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.start_wall + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def iter_texts(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(block type, text) for every text object in a Block Kit message."""
    for block in blocks:
        if isinstance(block.get("text"), dict):
            yield block["type"], block["text"]["text"]
        for field in block.get("fields", ()):
            yield "field", field["text"]
        for element in block.get("elements", ()):
            if "text" in element:
                yield "context", element["text"]

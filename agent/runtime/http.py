"""``/metrics``, ``/healthz`` and ``/readyz`` on a stdlib HTTP server in a daemon thread.

Kubernetes probes and Prometheus scrapes are tiny GETs; a threaded stdlib server is enough and
keeps the agent free of a web framework.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable
from typing import Self

import prometheus_client

log = logging.getLogger(__name__)

Probe = Callable[[], bool]
Reason = Callable[[], str]


class HealthServer:
    """Serves the registry and the two probes; ``port=0`` binds any free port (see ``.port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: prometheus_client.CollectorRegistry,
        readiness: Probe,
        liveness: Probe,
        *,
        readiness_reason: Reason | None = None,
        liveness_reason: Reason | None = None,
        detail: tuple[str, ...] = (),
    ) -> None:
        """``detail``: lines a ready answer adds after "ok" (what is on and off, and why)."""
        self.host = host
        self._requested_port = port
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness
        self.readiness_reason = readiness_reason
        self.liveness_reason = liveness_reason
        self.detail = detail
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HealthServer is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = _handler_class(self)
        try:
            server = http.server.ThreadingHTTPServer((self.host, self._requested_port), handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot bind the metrics/health server to {self.host}:{self._requested_port}: "
                f"{exc.strerror}; set http.port to a free port (0 = any)",
            ) from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
        self._thread.start()
        log.info("metrics and health endpoints on http://%s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def probe(self, which: str) -> tuple[bool, str]:
        """Run a probe; a probe that raises counts as failed (and says why), never as a 500."""
        check = self.readiness if which == "ready" else self.liveness
        try:
            ok = bool(check())
        except Exception as exc:  # a broken probe must not take the endpoint down
            log.exception("%s probe raised", which)
            return False, f"{which} probe raised {type(exc).__name__}"
        if ok:
            return True, "\n".join(("ok", *self.detail)) if which == "ready" else "ok"
        reason = self.readiness_reason if which == "ready" else self.liveness_reason
        if reason is not None:
            try:
                return False, reason()
            except Exception as exc:
                return False, f"not {which} (reason unavailable: {type(exc).__name__})"
        return False, "not ready" if which == "ready" else "not alive"


def _handler_class(owner: HealthServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "drift-agent"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                self._probe("alive")
            elif path == "/readyz":
                self._probe("ready")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _metrics(self) -> None:
            accept = self.headers.get("Accept")
            encoder, content_type = prometheus_client.exposition.choose_encoder(accept or "")
            self._send(200, encoder(owner.registry), content_type)

        def _probe(self, which: str) -> None:
            ok, reason = owner.probe(which)
            self._send(200 if ok else 503, (reason + "\n").encode("utf-8"))

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Probes hit this every few seconds; access logs would drown the agent's own lines.
            log.debug("http %s - " + format, self.address_string(), *args)

    return Handler

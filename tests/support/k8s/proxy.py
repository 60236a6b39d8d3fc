"""A TCP proxy in front of the API server that can hold back or delay its answers.

TLS passes through untouched (the client still verifies the API server's certificate); only the
server-to-client bytes are affected, as when a network or a load balancer loses answers:

- ``pass``: everything flows;
- ``hang``: requests reach the API server (a write may even take effect) but no answer comes
  back; the connection stays open;
- ``delay``: answers come back ``delay_s`` late.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal, Self

Mode = Literal["pass", "hang", "delay"]
CHUNK = 65536


class FlakyProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.held = 0  # answers (chunks) swallowed while hanging
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="flaky-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                if answers and self.mode == "hang":
                    self.held += 1
                    continue
                if answers and self.mode == "delay":
                    time.sleep(self.delay_s)
                target.sendall(data)
        except OSError:
            pass  # a side closed: the other side is shut down below
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

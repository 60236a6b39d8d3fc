"""A server process on loopback: spawn it, wait until it answers, keep its log, stop it.

The embedded Kafka broker (``demo.broker``, run by ``make demo``) and the tests' real
Alertmanager, MLflow server, etcd and kube-apiserver all start a binary on a free loopback port
and need the same four things: the output in a log file, a bounded wait for a readiness probe
that fails with the tail of that log (so a failed CI run explains itself), a stop that escalates
from a polite signal to SIGKILL, and a retry on another port when the port picked was taken in
between. It lives in the demo package because the demo runs the broker at runtime and must not
import the tests; the tests' harnesses import it from here.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Self, TypeVar

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
TAIL_LINES = 30
_TAIL_BYTES = 16_384  # enough for TAIL_LINES of any of these servers' log lines
_FIRST_POLL_S, _MAX_POLL_S = 0.02, 0.25  # a fast binary is seen at once, a slow one is not spun on

T = TypeVar("T")
Ready = Callable[[], bool]


class ServerStartError(RuntimeError):
    """The process exited before it was ready, or did not answer in time; the message ends with its log."""

    def __init__(self, message: str, *, exited: bool, log_tail: str) -> None:
        super().__init__(message)
        self.exited = exited
        self.log_tail = log_tail

    @property
    def port_taken(self) -> bool:
        """It exited because another process had bound its port first."""
        return self.exited and "address already in use" in self.log_tail.lower()


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ready(
    url: str, *, token: str | None = None, cafile: pathlib.Path | None = None, timeout_s: float = 2.0
) -> Ready:
    """A probe: True once GET ``url`` answers 200. Connection errors propagate as OSError, which
    ``ServerProcess.start`` counts as "not yet" and quotes if the wait times out."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None

    def probe() -> bool:
        request = urllib.request.Request(url)  # noqa: S310 - scheme checked above
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310
            return bool(response.status == 200)

    return probe


def retry_port_races(
    start: Callable[[int], T],
    *,
    attempts: int = 3,
    retry_on: Callable[[ServerStartError], bool] = lambda exc: exc.port_taken,
) -> T:
    """``start(attempt)`` (1-based) until it returns; a failure ``retry_on`` accepts gets another try.

    A port picked by ``free_port`` can be bound by someone else before the server binds it, so
    ``start`` should pick its ports afresh on every attempt.
    """
    for attempt in range(1, attempts + 1):
        try:
            return start(attempt)
        except ServerStartError as exc:
            if attempt == attempts or not retry_on(exc):
                raise
            log.warning("%s; retrying on another port", str(exc).splitlines()[0])
    raise AssertionError("unreachable")  # attempts >= 1: the loop returned or raised


class ServerProcess:
    """One run of a server binary, its stdout and stderr in ``log_path`` (a temporary file if None).

    ``own_process_group`` starts it as the leader of a new session and signals the whole group
    on stop, for servers that fork workers. ``stop_signal`` is what asks it to exit; SIGKILL
    follows after ``stop_timeout_s``. ``append_log`` keeps what earlier runs wrote to the file.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: pathlib.Path | None = None,
        append_log: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: pathlib.Path | None = None,
        own_process_group: bool = False,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        self._append_log = append_log
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._own_group = own_process_group
        self._stop_signal = stop_signal
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, ready: Ready, *, timeout_s: float) -> Self:
        """Spawn, then poll ``ready`` until it holds; on any failure the process is stopped first.

        Raises ServerStartError when the process exits or ``timeout_s`` passes (``ready`` is asked
        at least once); an OSError from ``ready`` means "not yet" and is quoted on a timeout.
        """
        self._spawn()
        try:
            self._wait_ready(ready, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def raise_if_exited(self) -> None:
        """ServerStartError (with the log tail) if the process has exited (or was never started):
        also what a server's probe calls on a process it depends on."""
        code = None if self._process is None else self._process.poll()
        if self._process is None or code is not None:
            tail = self.log_tail()
            raise ServerStartError(
                f"{self.name} exited with code {code} during start-up; log tail:\n{tail}",
                exited=True,
                log_tail=tail,
            )

    def stop(self, timeout_s: float | None = None) -> None:
        """``stop_signal``, then SIGKILL when it has not exited within ``timeout_s``; closes the log."""
        wait_s = self._stop_timeout_s if timeout_s is None else timeout_s
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(self._stop_signal)
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s pid %d ignored %s for %.1fs; killing it",
                    self.name,
                    process.pid,
                    self._stop_signal.name,
                    wait_s,
                )
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL at once (and wait for it), e.g. to test a server that vanishes without a goodbye."""
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(signal.SIGKILL)
            process.wait(timeout=self._stop_timeout_s)
        self._close_log()

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines the process wrote (read without moving its file offset)."""
        try:
            if self._log is not None:
                fd = self._log.fileno()
                size = os.fstat(fd).st_size
                data = os.pread(fd, _TAIL_BYTES, max(0, size - _TAIL_BYTES))
            elif self.log_path is not None:
                with self.log_path.open("rb") as handle:
                    handle.seek(max(0, self.log_path.stat().st_size - _TAIL_BYTES))
                    data = handle.read()
            else:
                return "(no log)"
        except OSError as exc:
            return f"(log unreadable: {exc})"
        text = "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
        return text or "(empty log)"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self) -> None:
        self._close_log()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a+b" if self._append_log else "w+b")  # "+": log_tail reads it
        else:
            # Kept only so a failed start can say why; closed in _close_log.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(  # noqa: S603 - argv from the caller, no shell
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=self._own_group,
            )
        except BaseException:  # no such binary, not executable: nothing will write the log
            self._close_log()
            raise

    def _wait_ready(self, ready: Ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = _FIRST_POLL_S
        last_error = ""
        while True:
            self.raise_if_exited()
            try:
                if ready():
                    return
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, 503 while starting
                last_error = f" (last probe: {exc})"
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                raise ServerStartError(
                    f"{self.name} not ready after {timeout_s:.1f}s{last_error}; log tail:\n{tail}",
                    exited=False,
                    log_tail=tail,
                )
            time.sleep(delay)  # waiting on a real process to bind: nothing to inject
            delay = min(delay * 2, _MAX_POLL_S)

    def _signal(self, signum: signal.Signals) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):  # it exited between poll() and here
            if self._own_group:
                # start_new_session made it the leader of its own group: signal exactly that group.
                os.killpg(self._process.pid, signum)
            else:
                self._process.send_signal(signum)

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

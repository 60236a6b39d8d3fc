"""A real MLflow tracking server + model registry on loopback, for the registry and rollback tests.

Runs the venv's own ``mlflow server`` executable (no shell) with a sqlite backend and a local
artifact root inside a directory the caller owns, waits until ``/health`` answers, and stops the
whole process group it started (the server forks workers) on exit.

    python -m tests.infra.mlflow_server     # start one, print its URI and start-up time, stop it
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from demo import processes

DEFAULT_STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class MlflowServerError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


@dataclasses.dataclass(frozen=True)
class MlflowServer:
    tracking_uri: str
    artifact_root: pathlib.Path
    backend_store_uri: str
    log_path: pathlib.Path
    startup_s: float  # from spawn to the first healthy /health answer (the cost every session pays)


def mlflow_executable() -> pathlib.Path:
    """The ``mlflow`` script next to this interpreter (the venv's), never one found on PATH."""
    candidate = pathlib.Path(sys.executable).parent / "mlflow"
    if not candidate.exists():
        raise MlflowServerError(f"no mlflow executable at {candidate}; install the project (make setup)")
    return candidate


# Kept under this name: tests pick a port nothing listens on through this module.
free_port = processes.free_port

_BIND_ATTEMPTS = 3


@contextlib.contextmanager
def running_server(
    base_dir: pathlib.Path, *, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` with its database, artifacts and log under ``base_dir``; stop it on exit."""
    base_dir.mkdir(parents=True, exist_ok=True)
    artifact_root = base_dir / "artifacts"
    artifact_root.mkdir(exist_ok=True)
    backend_store_uri = f"sqlite:///{base_dir / 'mlflow.db'}"
    log_path = base_dir / "mlflow-server.log"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    executable = mlflow_executable()
    started = time.monotonic()
    deadline = started + startup_timeout_s

    def launch(_attempt: int) -> tuple[str, processes.ServerProcess]:
        port = processes.free_port()
        argv = [
            str(executable),
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--default-artifact-root",
            str(artifact_root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # One worker: the machine is small and the tests are sequential.
            "--workers",
            "1",
        ]
        tracking_uri = f"http://127.0.0.1:{port}"
        server = processes.ServerProcess(
            "mlflow server",
            argv,
            log_path=log_path,
            env=env,
            own_process_group=True,
            stop_timeout_s=STOP_TIMEOUT_S,
        )
        # One deadline for every attempt: the caller's timeout bounds the whole start-up.
        server.start(
            processes.http_ready(f"{tracking_uri}/health"), timeout_s=max(0.0, deadline - time.monotonic())
        )
        return tracking_uri, server

    try:
        # The port is free when picked, but mlflow binds it ~20 s later: another server started in
        # the meantime may have taken it. Then pick another (a bounded number of times).
        tracking_uri, server = processes.retry_port_races(launch, attempts=_BIND_ATTEMPTS)
    except processes.ServerStartError as exc:
        raise MlflowServerError(str(exc)) from exc
    with server:
        yield MlflowServer(
            tracking_uri=tracking_uri,
            artifact_root=artifact_root,
            backend_store_uri=backend_store_uri,
            log_path=log_path,
            startup_s=time.monotonic() - started,
        )


_SESSION_SERVER = pytest.StashKey[MlflowServer]()


def session_server(config: pytest.Config) -> MlflowServer:
    """One server per pytest session, shared by every test directory that asks (start-up is slow).

    Kept on the session's config rather than in a fixture so fixtures of the same name in several
    conftest files still share one process; it stops when the session ends.
    """
    if _SESSION_SERVER in config.stash:
        return config.stash[_SESSION_SERVER]
    stack = contextlib.ExitStack()
    try:
        base_dir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlflow-server-")))
        server = stack.enter_context(running_server(base_dir))
    except BaseException:
        stack.close()
        raise
    config.add_cleanup(stack.close)
    config.stash[_SESSION_SERVER] = server
    return server


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="mlflow-server-") as tmp,
        running_server(pathlib.Path(tmp)) as server,
    ):
        print(f"tracking_uri={server.tracking_uri} startup_s={server.startup_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

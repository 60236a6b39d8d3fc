"""A real Prometheus Alertmanager on loopback, for the alert-sink tests.

Runs Debian's ``prometheus-alertmanager`` binary (no shell) with a temp config whose only
receiver is a webhook pointing where the caller says (a local HTTP server), small group waits
so grouped notifications arrive within a second, clustering off, and storage in a directory
the caller owns. It waits for ``/-/ready`` and stops the process it started on exit.

    python -m tests.infra.alertmanager     # start one, print its URL and start-up time, stop it
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

BINARY_CANDIDATES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
INSTALL_HINT = "apt-get install -y prometheus-alertmanager (scripts/setup.sh --test does it)"
DEFAULT_STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.1


class AlertmanagerError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


@dataclasses.dataclass(frozen=True)
class Alertmanager:
    url: str
    config_path: pathlib.Path
    log_path: pathlib.Path
    startup_s: float


def binary() -> pathlib.Path | None:
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return pathlib.Path(found)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_config(webhook_url: str, *, group_wait: str = "200ms", group_interval: str = "1s") -> str:
    # JSON is valid YAML; it spares a YAML dependency and any quoting question.
    config = {
        "route": {
            "receiver": "local",
            "group_by": ["alertname", "model"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "local", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    return json.dumps(config, indent=2)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _log_tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running(
    base_dir: pathlib.Path,
    webhook_url: str,
    *,
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
) -> Iterator[Alertmanager]:
    """Start Alertmanager with config, storage and log under ``base_dir``; stop it on exit."""
    executable = binary()
    if executable is None:
        raise AlertmanagerError(f"no Alertmanager binary found; {INSTALL_HINT}")
    base_dir.mkdir(parents=True, exist_ok=True)
    config_path = base_dir / "alertmanager.yml"
    config_path.write_text(render_config(webhook_url), encoding="utf-8")
    storage = base_dir / "data"
    storage.mkdir(exist_ok=True)
    log_path = base_dir / "alertmanager.log"
    port = free_port()
    argv = [
        str(executable),
        f"--config.file={config_path}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port, no peers
        "--log.level=info",
    ]
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = started + startup_timeout_s
        while not _ready(f"{url}/-/ready"):
            if process.poll() is not None:
                raise AlertmanagerError(
                    f"alertmanager exited with {process.returncode} before it was ready:\n"
                    + _log_tail(log_path)
                )
            if time.monotonic() > deadline:
                raise AlertmanagerError(
                    f"alertmanager not ready after {startup_timeout_s:.0f}s:\n" + _log_tail(log_path)
                )
            time.sleep(_POLL_INTERVAL_S)  # waiting on a real process to bind: nothing to inject
        yield Alertmanager(
            url=url, config_path=config_path, log_path=log_path, startup_s=time.monotonic() - started
        )
    finally:
        _stop(process)


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="alertmanager-") as tmp,
        running(pathlib.Path(tmp), "http://127.0.0.1:9/unused") as server,
    ):
        print(f"url={server.url} startup_s={server.startup_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

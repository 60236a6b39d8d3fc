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
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator

from demo import processes

BINARY_CANDIDATES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
INSTALL_HINT = "apt-get install -y prometheus-alertmanager (scripts/setup.sh --test does it)"
DEFAULT_STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


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
    port = processes.free_port()
    argv = [
        str(executable),
        f"--config.file={config_path}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port, no peers
        "--log.level=info",
    ]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = processes.ServerProcess(
        "alertmanager", argv, log_path=log_path, own_process_group=True, stop_timeout_s=STOP_TIMEOUT_S
    )
    try:
        server.start(processes.http_ready(f"{url}/-/ready"), timeout_s=startup_timeout_s)
    except processes.ServerStartError as exc:
        raise AlertmanagerError(str(exc)) from exc
    with server:
        yield Alertmanager(
            url=url, config_path=config_path, log_path=log_path, startup_s=time.monotonic() - started
        )


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="alertmanager-") as tmp,
        running(pathlib.Path(tmp), "http://127.0.0.1:9/unused") as server,
    ):
        print(f"url={server.url} startup_s={server.startup_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

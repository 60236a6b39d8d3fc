"""The agent's image for the image test tier, and a way to run it as the chart's pod would.

Built by ``scripts/image.sh``, the script behind ``make image``, on a base made here from Debian
packages (no registry is reachable from these machines). There is no container runtime here
either, so a container runs the way a runtime starts the chart's container, with the same
primitives: the image's rootfs (``buildah mount``) mounted read-only in a private mount
namespace, the chart's volumes bind-mounted writable, its own PID namespace (the agent is PID 1
and gets SIGTERM itself) and the image's Env, WorkingDir and User; the host's network, so the
loopback servers are reachable. Needs root (mount namespaces) and buildah.

    python -m tests.infra.image build     # build (or find up to date) the image; prints its name
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import IO

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO_ROOT / "scripts" / "image.sh"
REQUIRED_TOOLS = ("buildah", "mmdebstrap", "unshare", "chroot", "mount")

# Runs inside `unshare --mount --pid --fork` as the new namespace's PID 1: mounts the volumes on
# the rootfs, makes the rootfs read-only, then becomes the command (exec all the way, so the
# command keeps PID 1). Arguments: rootfs, user, workdir, then (source, target, ro|rw) triples,
# then "--" and the command. Mount points are created before the rootfs turns read-only, in the
# container's own layer, as a runtime does.
_ENTER = r"""
set -eu
root=$1; user=$2; workdir=$3; shift 3
mount --bind "$root" "$root"
while [ "$1" != "--" ]; do
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
  shift 3
done
shift
mkdir -p "$root/proc" "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" /usr/bin/env --chdir="$workdir" "$@"
"""


def unavailable_reason() -> str | None:
    """Why the image cannot be built and run here, or None when it can."""
    if os.geteuid() != 0:
        return "running the image with a read-only root filesystem needs root (mount namespaces)"
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh --test installs it)"
    return None


@dataclasses.dataclass(frozen=True)
class Image:
    ref: str
    env: dict[str, str]
    workdir: str
    user: str
    labels: dict[str, str]
    entrypoint: list[str]


@dataclasses.dataclass(frozen=True)
class Mount:
    source: pathlib.Path
    target: str
    read_only: bool = False


def _script(*args: str, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(IMAGE_SCRIPT), *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    return done.stdout.strip()


def _buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], stdout=subprocess.PIPE, check=True, text=True)
    return done.stdout.strip()


def build() -> Image:
    """``make image`` on the local Debian base; instant when the image is up to date."""
    base = _script("base")
    _script("build", env={"BASE_IMAGE": base})
    ref = _script("name")
    config = json.loads(_buildah("inspect", "--type", "image", ref))["OCIv1"]["config"]
    env = dict(entry.split("=", 1) for entry in config.get("Env", []))
    return Image(
        ref=ref,
        env=env,
        workdir=config.get("WorkingDir", "/"),
        user=config.get("User", "0"),
        labels=dict(config.get("Labels") or {}),
        entrypoint=list(config.get("Entrypoint") or []),
    )


class Running:
    """A command started in a container; the host's view of it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def agent_pid(self) -> int:
        """The host PID of the namespace's PID 1 (the command), a child of `unshare`."""
        children = pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split()
        if len(pids) != 1:
            raise AssertionError(f"expected one child of unshare, found {pids}")
        return int(pids[0])

    def pid_in_namespace(self) -> int:
        """The command's PID as it sees itself (the last NSpid field)."""
        for line in pathlib.Path(f"/proc/{self.agent_pid()}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
        raise AssertionError("no NSpid line in /proc/PID/status")

    def terminate(self) -> None:
        """SIGTERM to the command itself, as the kubelet's runtime sends it to PID 1."""
        os.kill(self.agent_pid(), signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        # `--kill-child`: unshare's death takes the namespace's PID 1, and with it every process.
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


class Container:
    """A writable container layer over the image, mounted on the host; removed on exit."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.name = f"drift-agent-test-{uuid.uuid4().hex[:10]}"
        self.rootfs = pathlib.Path("/nonexistent")

    def __enter__(self) -> Container:
        _buildah("from", "--quiet", "--name", self.name, self.image.ref)
        self.rootfs = pathlib.Path(_buildah("mount", self.name))
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["buildah", "umount", self.name], stdout=subprocess.DEVNULL, check=False)
        subprocess.run(["buildah", "rm", self.name], stdout=subprocess.DEVNULL, check=False)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        workdir: str | None = None,
        output: IO[bytes] | int | None = None,
    ) -> Running:
        """Start ``argv`` as the image's user on a read-only rootfs with ``mounts`` over it."""
        triples = [
            part
            for mount in mounts
            for part in (str(mount.source), mount.target, "ro" if mount.read_only else "rw")
        ]
        command = [
            "unshare", "--mount", "--pid", "--fork", "--kill-child",
            "sh", "-c", _ENTER, "enter",
            str(self.rootfs), self.image.user, workdir or self.image.workdir, *triples, "--", *argv,
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            env={**self.image.env, **(env or {})},
            stdout=output if output is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return Running(process)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        timeout_s: float = 120.0,
    ) -> tuple[int, str]:
        """Run ``argv`` to completion; its exit status and its output (stdout and stderr)."""
        running = self.start(argv, env=env, mounts=mounts)
        try:
            out, _ = running.process.communicate(timeout=timeout_s)
        finally:
            running.kill()
        return running.process.returncode, out.decode(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["build"]:
        print(__doc__, file=sys.stderr)
        return 2
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot build the image here: {reason}", file=sys.stderr)
        return 1
    print(build().ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())

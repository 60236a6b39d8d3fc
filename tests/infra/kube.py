"""A real Kubernetes API server (plus etcd) on loopback for the e2e tier, envtest-style.

No kube-apiserver binary is packaged anywhere reachable, so it is built once from Debian's own
``kubernetes`` source package (1.20.2, vendored Go deps) with Debian's Go, then cached outside
the repository. There is no kubelet: tests move Deployment status themselves.

    python -m tests.infra.kube build     # build (or find) the binary; prints its path
    python -m tests.infra.kube serve     # start etcd + API server, print a kubeconfig, wait
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Self

from kubernetes import client as k8s_client

from demo import processes

KUBE_VERSION = "1.20.2"
BINARY_ENV = "DRIFT_AGENT_KUBE_APISERVER"
APT_PACKAGES = ("golang-go", "etcd-server", "rsync", "jq", "golang-github-modern-go-reflect2-dev", "openssl")
# The vendored reflect2 v1.0.1 crashes under Go >= 1.18 on the first list request; Debian ships v1.0.2.
REFLECT2_SYSTEM = pathlib.Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
DEB_SRC_FILE = pathlib.Path("/etc/apt/sources.list.d/drift-agent-deb-src.sources")
ADMIN_USER = "admin"
AGENT_USER = "drift-agent"
AGENT_GROUP = "drift-agent-group"


class BuildUnavailable(RuntimeError):
    """The binary cannot be built here because apt or Go is absent (tests skip on this only)."""


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "drift-agent" / f"kube-apiserver-{KUBE_VERSION}"


def cached_binary_path() -> pathlib.Path:
    override = os.environ.get(BINARY_ENV)
    if override:
        return pathlib.Path(override)
    return cache_dir() / "kube-apiserver"


def _log(message: str) -> None:
    print(f"[kube] {message}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], *, cwd: pathlib.Path | None = None, env: dict[str, str] | None = None) -> None:
    _log("$ " + " ".join(argv))
    subprocess.run(list(argv), cwd=cwd, env=env, check=True)


def _root_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is None:
        raise BuildUnavailable("building kube-apiserver needs apt-get as root, and sudo is absent")
    return [sudo, "-n"]


def _apt_get(*args: str) -> None:
    # Other setup steps may hold the dpkg lock; wait for it instead of failing.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run([*_root_prefix(), "apt-get", "-o", "DPkg::Lock::Timeout=600", *args], env=env)


def _package_installed(name: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
    )
    return "install ok installed" in result.stdout


def _main_archive_uri() -> str:
    """The URI of the existing `deb` entry for bookworm main, so deb-src uses the same mirror."""
    for path in sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*.sources")):
        uris: list[str] = []
        suites: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "URIs":
                uris = value.split()
            elif key.strip() == "Suites":
                suites = value.split()
            elif not line.strip():
                if "bookworm" in suites and uris:
                    return uris[0]
                uris, suites = [], []
        if "bookworm" in suites and uris:
            return uris[0]
    return "http://deb.debian.org/debian"


def _has_deb_src() -> bool:
    for path in pathlib.Path("/etc/apt/sources.list.d").glob("*.sources"):
        if "deb-src" in path.read_text(encoding="utf-8"):
            return True
    sources_list = pathlib.Path("/etc/apt/sources.list")
    if sources_list.exists():
        return any(
            line.strip().startswith("deb-src")
            for line in sources_list.read_text(encoding="utf-8").splitlines()
        )
    return False


def _ensure_apt_inputs() -> None:
    if shutil.which("apt-get") is None:
        raise BuildUnavailable("apt-get is absent: cannot fetch Debian's kubernetes source package")
    missing = [name for name in APT_PACKAGES if not _package_installed(name)]
    need_src = not _has_deb_src()
    if need_src:
        entry = (
            "Types: deb-src\n"
            f"URIs: {_main_archive_uri()}\n"
            "Suites: bookworm\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".sources") as handle:
            handle.write(entry)
        _run([*_root_prefix(), "install", "-m", "0644", handle.name, str(DEB_SRC_FILE)])
        os.unlink(handle.name)
    if need_src or missing:
        _apt_get("update", "-qq")
    if missing:
        _apt_get("install", "-y", "-qq", "--no-install-recommends", *missing)
    if shutil.which("go") is None:
        raise BuildUnavailable("Go is absent after installing golang-go: cannot build kube-apiserver")


def _unpack_source(work: pathlib.Path) -> pathlib.Path:
    tarballs = sorted(work.glob("kubernetes_*.orig.tar.gz"))
    if not tarballs:
        _run(["apt-get", "source", "--download-only", "kubernetes"], cwd=work)
        tarballs = sorted(work.glob("kubernetes_*.orig.tar.gz"))
    if not tarballs:
        raise RuntimeError(f"apt-get source left no kubernetes_*.orig.tar.gz in {work}")
    source = work / "src"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir()
    _run(["tar", "-xzf", str(tarballs[-1]), "-C", str(source), "--strip-components=1"])
    return source


def _replace_reflect2(source: pathlib.Path) -> None:
    vendored = source / "vendor" / "github.com" / "modern-go" / "reflect2"
    if not REFLECT2_SYSTEM.is_dir():
        raise RuntimeError(f"{REFLECT2_SYSTEM} is missing: install golang-github-modern-go-reflect2-dev")
    shutil.rmtree(vendored)
    shutil.copytree(
        REFLECT2_SYSTEM,
        vendored,
        ignore=lambda _dir, names: [n for n in names if n == "go.mod" or n.endswith("_test.go")],
    )


def _compile(source: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    link_parent = source / ".go" / "src" / "k8s.io"
    link_parent.mkdir(parents=True, exist_ok=True)
    link = link_parent / "kubernetes"
    if not link.is_symlink():
        link.symlink_to("../../..")
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, GOPATH=str(source / ".go"), CGO_ENABLED="0", HOME=str(home))
    _run(["make", "WHAT=cmd/kube-apiserver"], cwd=source, env=env)
    built = source / "_output" / "local" / "bin" / "linux" / "amd64" / "kube-apiserver"
    if not built.is_file():
        raise RuntimeError(f"make finished but {built} does not exist")
    return built


def build_apiserver(*, keep_sources: bool = False) -> pathlib.Path:
    """Return the cached kube-apiserver, building it first if needed (one builder at a time)."""
    target = cached_binary_path()
    if target.is_file() and os.access(target, os.X_OK):
        if shutil.which("etcd") is None:
            _ensure_apt_inputs()  # a cached binary is no use without etcd beside it
        return target
    if os.environ.get(BINARY_ENV):
        raise RuntimeError(f"{BINARY_ENV}={target} is not an executable file; unset it to build one")
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / "build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here and then finds the binary
        if target.is_file():
            return target
        started = time.monotonic()
        _ensure_apt_inputs()
        work = target.parent / "build"
        work.mkdir(exist_ok=True)
        source = _unpack_source(work)
        _replace_reflect2(source)
        built = _compile(source, work)
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        os.replace(partial, target)
        _log(f"built {target} in {time.monotonic() - started:.0f} s")
        if not keep_sources:  # the unpacked sources and the Go build cache are large
            shutil.rmtree(source, ignore_errors=True)
            shutil.rmtree(work / "home", ignore_errors=True)
    return target


# Kept under this name: tests pick a port nothing listens on through this module.
free_port = processes.free_port


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: pathlib.Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account key pair."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=drift-agent-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kube-apiserver",
        "-CA", "ca.crt", "-CAkey", "ca.key", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", "server.key", "-out", "server.crt", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=service-accounts",
        "-keyout", "sa.key", "-out", "sa.crt", cwd=directory,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Identity:
    token: str = dataclasses.field(repr=False)  # never in test output
    user: str
    groups: tuple[str, ...]


class KubeAPIServer:
    """etcd + kube-apiserver on free loopback ports, with token authentication and RBAC.

    Two identities: ``admin`` (group ``system:masters``: everything) and ``agent`` (no
    permission until a test binds a Role to its user or group).
    """

    def __init__(self, binary: pathlib.Path | None = None, *, start_timeout_s: float = 90.0) -> None:
        self.binary = binary or build_apiserver()
        self.etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self.start_timeout_s = start_timeout_s
        self.admin = Identity(secrets.token_hex(16), ADMIN_USER, ("system:masters",))
        self.agent = Identity(secrets.token_hex(16), AGENT_USER, (AGENT_GROUP,))
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="drift-agent-kube-"))
        self.port = 0
        self.start_seconds = 0.0
        self._processes: list[processes.ServerProcess] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> pathlib.Path:
        return self.workdir / "certs" / "ca.crt"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        certs = self.workdir / "certs"
        certs.mkdir()
        make_certificates(certs)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            "".join(
                f'{i.token},{i.user},{i.user},"{",".join(i.groups)}"\n' for i in (self.admin, self.agent)
            ),
            encoding="utf-8",
        )
        tokens.chmod(0o600)
        # A free port can be taken by another process between probe and bind: retry on new ones.
        processes.retry_port_races(lambda attempt: self._launch(certs, tokens, attempt))
        self.start_seconds = time.monotonic() - started

    def _launch(self, certs: pathlib.Path, tokens: pathlib.Path, attempt: int) -> None:
        etcd_port, peer_port, self.port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        try:
            etcd = self._start(
                "etcd",
                attempt,
                [
                    self.etcd, "--name", "test", "--data-dir", str(self.workdir / f"etcd-{attempt}"),
                    "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                    "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                    "--initial-cluster", f"test={peer_url}", "--log-level", "warn",
                ],
                processes.http_ready(f"{etcd_url}/health"),
            )  # fmt: skip
            readyz = processes.http_ready(f"{self.url}/readyz", token=self.admin.token, cafile=self.ca_path)

            def apiserver_ready() -> bool:
                etcd.raise_if_exited()  # an API server whose etcd died never gets ready: say why
                return readyz()

            self._start(
                "kube-apiserver",
                attempt,
                [
                    str(self.binary), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
                    "--secure-port", str(self.port), "--cert-dir", str(certs),
                    "--tls-cert-file", str(certs / "server.crt"),
                    "--tls-private-key-file", str(certs / "server.key"),
                    "--service-account-key-file", str(certs / "sa.crt"),
                    "--service-account-signing-key-file", str(certs / "sa.key"),
                    "--service-account-issuer", "https://kubernetes.default.svc",
                    "--token-auth-file", str(tokens), "--authorization-mode", "RBAC",
                    "--service-cluster-ip-range", "10.0.0.0/24",
                    "--disable-admission-plugins", "ServiceAccount", "--profiling=false",
                ],
                apiserver_ready,
            )  # fmt: skip
        except BaseException:
            self._stop_processes()  # the next attempt (or the caller) starts from nothing
            raise

    def _start(
        self, name: str, attempt: int, argv: list[str], ready: processes.Ready
    ) -> processes.ServerProcess:
        process = processes.ServerProcess(
            name, argv, log_path=self.workdir / f"{name}-{attempt}.log", stop_timeout_s=15.0
        )
        self._processes.append(process.start(ready, timeout_s=self.start_timeout_s))
        return process

    def stop(self) -> None:
        self._stop_processes()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def client_for_token(self, token: str) -> k8s_client.ApiClient:
        configuration = k8s_client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_path)
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s_client.ApiClient(configuration)

    def anonymous_client(self) -> k8s_client.ApiClient:
        """No credentials at all: what a container without a mounted token can send."""
        configuration = k8s_client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_path)
        return k8s_client.ApiClient(configuration)

    def admin_client(self) -> k8s_client.ApiClient:
        return self.client_for_token(self.admin.token)

    def agent_client(self) -> k8s_client.ApiClient:
        return self.client_for_token(self.agent.token)

    def kubeconfig_path(self, token: str | None = None) -> pathlib.Path:
        """Write a kubeconfig for ``token`` (default: admin) and return its path (mode 0600)."""
        token = token or self.admin.token
        path = self.workdir / f"kubeconfig-{secrets.token_hex(4)}.yaml"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)}}
            ],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is valid YAML
        return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra.kube", description=__doc__)
    parser.add_argument("command", choices=["build", "serve"])
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            print(build_apiserver())
        except BuildUnavailable as exc:
            print(f"cannot build kube-apiserver here: {exc}", file=sys.stderr)
            return 2
        return 0
    with KubeAPIServer() as server:
        print(f"kube-apiserver ready at {server.url} in {server.start_seconds:.1f} s", flush=True)
        print(f"admin kubeconfig: {server.kubeconfig_path()}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

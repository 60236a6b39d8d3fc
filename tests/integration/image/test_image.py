"""The image `make image` builds: what it holds, and the chart's container run from it.

The container runs as the chart's Deployment specifies it (command, args, env, working dir, user,
volumes), on a read-only root filesystem with only the chart's volumes writable, as PID 1 of its
own PID namespace, against the real broker (tests/infra/image.py says how without a runtime).
"""

from __future__ import annotations

import pathlib
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from demo import broker, processes
from tests.infra import image as image_infra
from tests.support.helm import chart

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        image_infra.unavailable_reason() is not None,
        reason=f"the image tier cannot run here: {image_infra.unavailable_reason()}",
    ),
]

AGENT_UID = 65532
READY_WITHIN_S = 120.0


@pytest.fixture(scope="module")
def image() -> image_infra.Image:
    return image_infra.build()


@pytest.fixture
def container(image: image_infra.Image) -> Iterator[image_infra.Container]:
    with image_infra.Container(image) as made:
        yield made


_QUANTITY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "": 1}


def _quantity(text: str) -> int:
    """A Kubernetes binary quantity ("1Gi", "512Mi", "1048576") in units of 1."""
    number = text.rstrip("KMGTi")
    return int(number) * _QUANTITY_UNITS[text[len(number) :]]


def _env_value(entry: chart.Doc, container: chart.Doc) -> str:
    """What the kubelet puts in an env var: its value, or the container's own resource field
    (``resourceFieldRef``, divided by its divisor and rounded up, as the kubelet does)."""
    if "value" in entry:
        return str(entry["value"])
    field = entry["valueFrom"]["resourceFieldRef"]  # the only kind the chart uses (KeyError otherwise)
    kind, _, resource = field["resource"].partition(".")
    amount = _quantity(str(container["resources"][kind][resource]))
    divisor = _quantity(str(field.get("divisor", "1")))
    return str(-(-amount // divisor))


def _agent_container(docs: list[chart.Doc]) -> tuple[chart.Doc, chart.Doc]:
    pod = chart.only(docs, "Deployment")["spec"]["template"]["spec"]
    return pod, chart.container(pod, "drift-agent")


def _volumes_on_disk(docs: list[chart.Doc], pod: chart.Doc, root: pathlib.Path) -> list[image_infra.Mount]:
    """Each of the container's volumeMounts as a host directory, filled as the kubelet would:
    ConfigMaps as files, emptyDirs empty; the projected API token stays empty (no API server)."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_maps = {doc["metadata"]["name"]: doc for doc in chart.find(docs, "ConfigMap")}
    mounts = []
    for mount in _agent_container(docs)[1]["volumeMounts"]:
        source = root / mount["name"]
        source.mkdir(parents=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (source / key).write_text(text)
        source.chmod(0o777)  # an emptyDir is writable by the pod's user
        mounts.append(
            image_infra.Mount(source, mount["mountPath"], read_only=bool(mount.get("readOnly", False)))
        )
    return mounts


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_the_charts_default_image_is_the_one_make_image_builds(image: image_infra.Image) -> None:
    _, agent = _agent_container(chart.render())
    assert agent["image"] == image.ref
    assert agent["command"] == image.entrypoint == ["drift-agent"]
    version = tomllib.loads((image_infra.REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image.labels["org.opencontainers.image.version"] == version
    assert image.labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert image.labels["org.opencontainers.image.source"].startswith("https://")
    # A numeric user, the chart's: runAsNonRoot can check it without an /etc/passwd entry.
    security = agent["securityContext"]
    assert image.user == f"{security['runAsUser']}:{security['runAsGroup']}" == f"{AGENT_UID}:{AGENT_UID}"
    assert image.workdir == agent["workingDir"]


def test_the_image_holds_no_compiler_no_pip_and_no_package_cache(container: image_infra.Container) -> None:
    root = container.rootfs
    for tool in ("gcc", "cc", "c++", "g++", "make", "ld"):
        assert not (root / "usr" / "bin" / tool).exists(), f"/usr/bin/{tool} is in the image"
    venv = root / "opt" / "drift-agent"
    assert (venv / "bin" / "drift-agent").exists()
    assert not list((venv / "bin").glob("pip*")), "pip is left in the image"
    site = venv / "lib" / "python3.11" / "site-packages"
    assert not list(site.glob("*/tests")), "packages' test suites are left in the image"
    assert not (site / "torch" / "include").exists(), "torch's C headers are left in the image"
    debs = list((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    lists = [path for path in (root / "var" / "lib" / "apt" / "lists").glob("*") if path.is_file()]
    assert debs == [] and [path.name for path in lists if path.name != "lock"] == []
    for cache in (root / "root" / ".cache", root / "tmp" / "pip-cache"):
        assert not cache.exists(), f"{cache.relative_to(root)} is in the image"


def test_help_and_check_config_run_as_the_non_root_user(
    container: image_infra.Container, tmp_path: pathlib.Path
) -> None:
    status, out = container.run(["id", "-u"])
    assert (status, out.strip()) == (0, str(AGENT_UID))
    status, out = container.run(["drift-agent", "--help"])
    assert status == 0, out
    assert "check-config" in out and "run" in out
    docs = chart.render()
    mounts = _volumes_on_disk(docs, _agent_container(docs)[0], tmp_path)
    # The chart's own files, at the paths the chart mounts them.
    for path in ("config/agent.yaml", "policy/policy.yaml", "overrides/overrides.yaml"):
        status, out = container.run(
            ["drift-agent", "check-config", f"/etc/drift-agent/{path}"], mounts=mounts
        )
        assert status == 0, f"check-config {path} failed in the image:\n{out}"
    # And a bad one is refused there too, naming the field.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "agent.yaml").write_text("kafka:\n  max_poll_records: -3\n")
    status, out = container.run(
        ["drift-agent", "check-config", "/etc/bad/agent.yaml"],
        mounts=[image_infra.Mount(bad, "/etc/bad", read_only=True)],
    )
    assert status != 0 and "max_poll_records" in out, out


def test_the_charts_container_runs_read_only_becomes_ready_and_drains_on_sigterm(
    container: image_infra.Container, kafka_broker: broker.EmbeddedBroker, tmp_path: pathlib.Path
) -> None:
    run_id = uuid.uuid4().hex[:8]
    port = processes.free_port()
    topic = f"image-predictions-{run_id}"
    kafka_broker.create_topics([topic, f"{topic}.dlq"], partitions=2)
    values: dict[str, Any] = {
        "agent": {
            "kafka": {
                "bootstrap_servers": kafka_broker.bootstrap_servers,
                "predictions_topic": topic,
                "dead_letter_topic": f"{topic}.dlq",
                "group_id": f"image-{run_id}",
            },
            "streams": {"topic_prefix": f"image-{run_id}"},
            "http": {"port": port},
        },
        # The Lease needs an API server, which this tier does not start (the e2e tier does).
        "leaderElection": {"enabled": False},
    }
    docs = chart.render(values)
    pod, agent = _agent_container(docs)
    mounts = _volumes_on_disk(docs, pod, tmp_path / "volumes")
    env = {entry["name"]: _env_value(entry, agent) for entry in agent["env"]}
    assert env["DRIFT_AGENT_MEMORY__CONTAINER_LIMIT_MIB"] == "1024"  # the chart's 1Gi limit
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        running = container.start(
            [*agent["command"], *agent["args"]],
            env=env,
            mounts=mounts,
            workdir=agent["workingDir"],
            output=log,
        )
        try:
            deadline = time.monotonic() + READY_WITHIN_S
            while not _ready(port):
                assert running.process.poll() is None, f"the agent exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, (
                    f"no /readyz within {READY_WITHIN_S}s:\n{log_path.read_text()}"
                )
                time.sleep(0.5)
            assert running.pid_in_namespace() == 1
            running.terminate()
            status = running.wait(timeout_s=float(env["DRIFT_AGENT_RUNTIME__DRAIN_TIMEOUT_S"]) + 15)
        finally:
            running.kill()
    output = log_path.read_text()
    assert status == 0, output
    assert "draining" in output
    # It wrote its state where the chart gives it a volume, and (the root being read-only)
    # nowhere else: a write elsewhere would have failed the run.
    state = next(m.source for m in mounts if m.target.endswith("/.state"))
    assert any(state.iterdir()), output
    assert "Read-only file system" not in output

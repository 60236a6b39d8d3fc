"""Render helm/drift-agent offline (helm_python, no helm binary) and pick objects out of it."""

from __future__ import annotations

import pathlib
from typing import Any

import helm_python
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART_PATH = REPO_ROOT / "helm" / "drift-agent"
CONFIG_DIR = REPO_ROOT / "config"
RELEASE = "drift"
NAMESPACE = "ml"
FULLNAME = "drift-drift-agent"

Doc = dict[str, Any]


def render_files(
    values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE, release: str = RELEASE
) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    with helm_python.Chart.load(CHART_PATH) as chart:
        rendered: dict[str, str] = chart.render(
            values=values or {}, name=release, namespace=namespace, is_install=True
        )
    return rendered


def render(
    values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE, release: str = RELEASE
) -> list[Doc]:
    """Every object the chart renders for these values."""
    files = render_files(values, namespace=namespace, release=release)
    return [
        doc
        for path, text in sorted(files.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def render_error(values: dict[str, Any]) -> str:
    """The message helm gives for values the chart must refuse (fails if it renders)."""
    try:
        render_files(values)
    except helm_python.HelmError as exc:
        return str(exc)
    raise AssertionError(f"the chart rendered values it should refuse: {values}")


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    if len(found) != 1:
        names = [doc["metadata"]["name"] for doc in find(docs, kind)]
        raise AssertionError(f"expected one {kind} named {name or '<any>'}, found {names}")
    return found[0]


def container(pod_spec: Doc, name: str) -> Doc:
    matches = [c for c in pod_spec["containers"] if c["name"] == name]
    if len(matches) != 1:
        raise AssertionError(
            f"expected one container {name}, got {[c['name'] for c in pod_spec['containers']]}"
        )
    found: Doc = matches[0]
    return found


def config_map_file(docs: list[Doc], suffix: str, key: str) -> str:
    text: str = only(docs, "ConfigMap", f"{FULLNAME}-{suffix}")["data"][key]
    return text


def agent_settings(docs: list[Doc]) -> dict[str, Any]:
    """The agent.yaml the chart builds, parsed."""
    parsed: dict[str, Any] = yaml.safe_load(config_map_file(docs, "config", "agent.yaml"))
    return parsed

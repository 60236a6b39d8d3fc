"""The named templates from a user's own chart: drift-agent as a dependency, the agent included
in the user's Deployment (the README's "Adding the agent to your own chart")."""

from __future__ import annotations

import pathlib
import shutil

import helm_python
import yaml

from tests.support.helm import chart

PARENT_CHART = """\
apiVersion: v2
name: churn-serving
version: 1.0.0
dependencies:
  - name: drift-agent
    version: 0.1.0
"""
PARENT_VALUES = """\
drift-agent:
  mode: sidecar
  serving:
    create: false          # this chart owns the Deployment
  target:
    kubernetes:
      deployment: churn    # the Deployment below: the Role grants exactly this name
      container: model
"""
# The snippet the README shows, verbatim.
PARENT_DEPLOYMENT = """\
{{- $agent := index .Subcharts "drift-agent" }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: churn
spec:
  selector:
    matchLabels: {app: churn}
  template:
    metadata:
      labels:
        app: churn
        {{- include "drift-agent.podLabels" $agent | nindent 8 }}
      annotations:
        {{- include "drift-agent.configChecksum" $agent | nindent 8 }}
    spec:
      serviceAccountName: {{ include "drift-agent.serviceAccountName" $agent }}
      automountServiceAccountToken: false  # the agent container mounts its own token
      terminationGracePeriodSeconds: {{ include "drift-agent.graceSeconds" $agent }}
      containers:
        - name: model
          image: registry.local/churn:1
        {{- include "drift-agent.sidecar" $agent | nindent 8 }}
      volumes:
        {{- include "drift-agent.volumes" $agent | nindent 8 }}
"""


def make_parent(root: pathlib.Path) -> pathlib.Path:
    parent = root / "churn-serving"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(chart.CHART_PATH, parent / "charts" / "drift-agent")
    (parent / "Chart.yaml").write_text(PARENT_CHART, encoding="utf-8")
    (parent / "values.yaml").write_text(PARENT_VALUES, encoding="utf-8")
    (parent / "templates" / "deployment.yaml").write_text(PARENT_DEPLOYMENT, encoding="utf-8")
    return parent


def render_parent(parent: pathlib.Path) -> list[chart.Doc]:
    with helm_python.Chart.load(parent) as loaded:
        files = loaded.render(values={}, name="churn", namespace="ml", is_install=True)
    return [doc for path, text in sorted(files.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]  # fmt: skip


def test_the_agent_joins_the_users_deployment_and_the_subchart_renders_the_rest(
    tmp_path: pathlib.Path,
) -> None:
    parent = make_parent(tmp_path)
    report = helm_python.lint(parent, strict=True)
    assert report["errors"] == [], report

    docs = render_parent(parent)
    deployments = chart.find(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == ["churn"]  # no serving Deployment of the chart's
    assert chart.find(docs, "PodDisruptionBudget") == []  # the user's chart owns its pods' PDB
    pod = deployments[0]["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["model", "drift-agent"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 35
    agent = chart.container(pod["spec"], "drift-agent")
    assert agent["readinessProbe"]["httpGet"]["path"] == "/healthz"  # never gates the model's traffic

    config_maps = {d["metadata"]["name"] for d in chart.find(docs, "ConfigMap")}
    referenced = {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
    assert referenced == {
        "churn-drift-agent-config",
        "churn-drift-agent-policy",
        "churn-drift-agent-overrides",
    }
    assert referenced <= config_maps
    assert pod["spec"]["serviceAccountName"] == chart.only(docs, "ServiceAccount")["metadata"]["name"]
    service = chart.only(docs, "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app"] == "churn"  # the user's own labels are untouched

    role = chart.only(docs, "Role")
    deployment_rule = next(rule for rule in role["rules"] if rule["resources"] == ["deployments"])
    assert deployment_rule["resourceNames"] == ["churn"]
    settings = yaml.safe_load(chart.only(docs, "ConfigMap", "churn-drift-agent-config")["data"]["agent.yaml"])
    assert settings["target"]["kubernetes"]["deployment"] == "churn"


def test_the_snippet_the_install_notes_print_renders_in_the_users_chart(tmp_path: pathlib.Path) -> None:
    """NOTES.txt (sidecar, serving.create=false) prints a Deployment to paste: pasted, it renders."""
    with helm_python.Chart.load(chart.CHART_PATH) as loaded:
        files = loaded.render(
            values=yaml.safe_load(PARENT_VALUES)["drift-agent"], name="churn", namespace="ml", is_install=True
        )
    notes = next(text for path, text in files.items() if path.endswith("NOTES.txt"))
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if "$agent := index" in line)
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    snippet = "\n".join(line[2:] for line in lines[start:end]) + "\n"
    parent = make_parent(tmp_path)
    (parent / "templates" / "deployment.yaml").write_text(snippet, encoding="utf-8")
    docs = render_parent(parent)
    pod = chart.only(docs, "Deployment", "churn")["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["model", "drift-agent"]
    assert pod["spec"]["serviceAccountName"] == chart.only(docs, "ServiceAccount")["metadata"]["name"]
    assert {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v} == {
        "churn-drift-agent-config",
        "churn-drift-agent-policy",
        "churn-drift-agent-overrides",
    }
    assert chart.only(docs, "Service")["spec"]["selector"].items() <= pod["metadata"]["labels"].items()

"""The chart rendered offline with several value sets: the objects, containers, mounts and env."""

from __future__ import annotations

import copy
import os
import pathlib
import posixpath
from typing import Any

import helm_python
import pytest
import yaml

from agent import settings as settings_mod
from tests.support.helm import chart, samples

AGENT_SECURITY = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def with_values(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted keys set, e.g. ``**{"agent.runtime.drain_timeout_s": 40}``."""
    values = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def pod_spec(docs: list[chart.Doc], deployment: str) -> chart.Doc:
    spec: chart.Doc = chart.only(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def env_of(container: chart.Doc) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def mounts_of(container: chart.Doc) -> dict[str, chart.Doc]:
    return {mount["mountPath"]: mount for mount in container["volumeMounts"]}


def load_as_agent(
    docs: list[chart.Doc], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> settings_mod.AgentSettings:
    """Validate the rendered agent.yaml with the agent's own loader (environment cleared)."""
    for name in list(os.environ):
        if name.startswith(settings_mod.ENV_PREFIX):
            monkeypatch.delenv(name)
    path = tmp_path / "agent.yaml"
    path.write_text(chart.config_map_file(docs, "config", "agent.yaml"), encoding="utf-8")
    return settings_mod.load_settings(path)


def test_lint_is_clean_for_every_value_set() -> None:
    for values in (samples.MINIMAL, samples.SIDECAR, samples.STANDALONE, samples.KSERVE):
        report = helm_python.lint(chart.CHART_PATH, values, strict=True)
        assert report["errors"] == [], (values, report)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [], problems


def test_minimal_values_render_the_standalone_agent_and_nothing_optional() -> None:
    docs = chart.render(samples.MINIMAL)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget"]
        + ["ConfigMap"] * 4  # settings, policy, overrides, dashboard
    )
    spec = pod_spec(docs, chart.FULLNAME)
    assert [c["name"] for c in spec["containers"]] == ["drift-agent"]
    assert spec["serviceAccountName"] == chart.only(docs, "ServiceAccount")["metadata"]["name"]
    assert {doc["metadata"]["namespace"] for doc in docs} == {chart.NAMESPACE}


TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_only_the_agent_container_gets_an_api_token() -> None:
    for values, name in ((samples.SIDECAR, "churn-server"), (samples.MINIMAL, chart.FULLNAME)):
        spec = pod_spec(chart.render(values), name)
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if container["name"] == "drift-agent":
                assert mounts[TOKEN_DIR] == "drift-agent-api-token"
            else:
                assert not any(path.startswith("/var/run/secrets") for path in mounts), container["name"]
        (token,) = [v for v in spec["volumes"] if v["name"] == "drift-agent-api-token"]
        sources = token["projected"]["sources"]
        assert sources[0]["serviceAccountToken"] == {"path": "token", "expirationSeconds": 3607}
        assert {"configMap", "downwardAPI"} <= {key for source in sources[1:] for key in source}


def test_sidecar_renders_the_serving_deployment_with_gpu_scheduling_and_the_agent_beside_it() -> None:
    docs = chart.render(samples.SIDECAR)
    deployment = chart.only(docs, "Deployment")
    assert deployment["metadata"]["name"] == "churn-server"  # the name the Role grants
    assert deployment["metadata"]["annotations"]["drift-agent.io/model-version"] == "3"
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["model", "drift-agent"]

    model = chart.container(spec, "model")
    assert model["image"] == "registry.local/models/churn-server:2.1"
    assert model["args"] == ["--port", "8080"]
    assert env_of(model) == {"MODEL_URI": "s3://models/churn/3", "LOG_LEVEL": "info"}
    assert model["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    assert model["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": "http"}}
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # The agent container gets no GPU and the pod's securityContext stays the model server's.
    agent = chart.container(spec, "drift-agent")
    assert "nvidia.com/gpu" not in str(agent["resources"])
    assert "securityContext" not in spec
    # `kubectl logs` without -c shows the model.
    assert deployment["spec"]["template"]["metadata"]["annotations"][
        "kubectl.kubernetes.io/default-container"
    ] == ("model")


def test_cpu_only_serving_requests_no_gpu() -> None:
    docs = chart.render(with_values(samples.SIDECAR, **{"serving.gpu.count": 0}))
    model = chart.container(pod_spec(docs, "churn-server"), "model")
    assert "nvidia.com/gpu" not in str(model["resources"])


@pytest.mark.parametrize(
    ("values", "deployment"),
    [
        (samples.SIDECAR, "churn-server"),
        (samples.STANDALONE, chart.FULLNAME),
        (samples.KSERVE, chart.FULLNAME),
    ],
    ids=["sidecar", "standalone", "kserve"],
)
def test_agent_container_is_locked_down_with_probes_and_writable_state(
    values: dict[str, Any], deployment: str
) -> None:
    docs = chart.render(values)
    agent = chart.container(pod_spec(docs, deployment), "drift-agent")
    assert agent["securityContext"].items() >= AGENT_SECURITY.items()
    assert agent["securityContext"]["runAsUser"] > 0
    port = agent["ports"][0]
    assert port == {"name": "agent-metrics", "containerPort": 9108, "protocol": "TCP"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent-metrics"}
    # A sidecar's readiness gates the model's traffic, so it follows liveness there.
    expected_readiness = "/healthz" if values.get("mode") == "sidecar" else "/readyz"
    assert agent["readinessProbe"]["httpGet"] == {"path": expected_readiness, "port": "agent-metrics"}
    assert agent["args"] == ["run", "--config", "/etc/drift-agent/config/agent.yaml"]
    assert agent["resources"]["limits"]["memory"] == "1Gi"

    # The root filesystem is read-only: the state dir is an emptyDir, and the agent runs in its
    # parent, so relative `.state/...` defaults (canary state, retrain work dir) land in it too.
    volumes = {v["name"]: v for v in pod_spec(docs, deployment)["volumes"]}
    mounts = mounts_of(agent)
    state_dir = chart.agent_settings(docs)["runtime"]["state_dir"]
    for writable in (state_dir, "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]["name"]], writable
        assert not mounts[writable].get("readOnly", False)
    assert posixpath.join(agent["workingDir"], ".state") == state_dir


def test_every_state_path_the_agent_writes_resolves_into_the_state_emptydir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = with_values(samples.SIDECAR, **{"agent.canary": {"steps": [10, 100]}})
    docs = chart.render(values)
    agent = chart.container(pod_spec(docs, "churn-server"), "drift-agent")
    settings = load_as_agent(docs, tmp_path, monkeypatch).model_dump(mode="json")
    state_dir = settings["runtime"]["state_dir"]
    paths = {
        "audit.path": settings["audit"]["path"],
        "retrain.runner.work_dir": settings["retrain"]["runner"]["work_dir"],
        "target.local.path": settings["target"]["local"]["path"],
    }
    for name, path in paths.items():
        resolved = posixpath.normpath(posixpath.join(agent["workingDir"], path))
        assert resolved.startswith(state_dir + "/"), (
            f"{name}={path} resolves outside the state dir: {resolved}"
        )


def test_grace_period_follows_the_drain_bound_and_the_env_carries_the_same_value() -> None:
    for drain, margin, expected in ((25, 10, 35), (40, 10, 50), (12.5, 5, 18)):
        values = with_values(
            samples.STANDALONE,
            **{"agent.runtime.drain_timeout_s": drain, "terminationGraceMarginSeconds": margin},
        )
        docs = chart.render(values)
        spec = pod_spec(docs, chart.FULLNAME)
        assert spec["terminationGracePeriodSeconds"] == expected
        agent = chart.container(spec, "drift-agent")
        assert float(env_of(agent)["DRIFT_AGENT_RUNTIME__DRAIN_TIMEOUT_S"]) == drain
        assert chart.agent_settings(docs)["runtime"]["drain_timeout_s"] == drain


def test_sidecar_grace_period_is_the_larger_of_the_model_servers_and_the_agents() -> None:
    slow_model = with_values(samples.SIDECAR, **{"serving.terminationGracePeriodSeconds": 120})
    assert pod_spec(chart.render(slow_model), "churn-server")["terminationGracePeriodSeconds"] == 120
    quick_model = with_values(samples.SIDECAR, **{"serving.terminationGracePeriodSeconds": 5})
    assert pod_spec(chart.render(quick_model), "churn-server")["terminationGracePeriodSeconds"] == 35


def test_config_maps_are_mounted_as_directories_and_settings_point_into_them() -> None:
    docs = chart.render(samples.SIDECAR)
    spec = pod_spec(docs, "churn-server")
    agent = chart.container(spec, "drift-agent")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = mounts_of(agent)
    settings = chart.agent_settings(docs)
    for suffix, setting_path in (
        ("config", "/etc/drift-agent/config/agent.yaml"),
        ("policy", settings["policy"]["path"]),
        ("overrides", settings["overrides"]["path"]),
    ):
        directory, filename = setting_path.rsplit("/", 1)
        mount = mounts[directory]
        assert "subPath" not in mount, f"{suffix} must be a directory mount so kubelet can update it"
        assert mount["readOnly"] is True
        config_map = volumes[mount["name"]]["configMap"]["name"]
        assert config_map == f"{chart.FULLNAME}-{suffix}"
        assert filename in chart.only(docs, "ConfigMap", config_map)["data"]


def test_secrets_are_mounted_files_that_the_settings_name_and_never_configmap_data() -> None:
    docs = chart.render(samples.SIDECAR)
    spec = pod_spec(docs, "churn-server")
    agent = chart.container(spec, "drift-agent")
    volumes = {v["name"]: v for v in spec["volumes"]}
    settings = chart.agent_settings(docs)
    sinks = {sink["name"]: sink for sink in settings["alerting"]["sinks"]}
    expected = {
        settings["kafka"]["sasl_password_file"]: ("kafka-credentials", "password"),
        sinks["slack-ml"]["webhook_url_file"]: ("drift-agent-slack", "webhook-url"),
        sinks["pagerduty-ml"]["routing_key_file"]: ("drift-agent-pagerduty", "routing-key"),
        sinks["incident-bot"]["secret_file"]: ("drift-agent-webhook", "hmac"),
    }
    for file_path, (secret_name, key) in expected.items():
        assert file_path.startswith("/var/run/secrets/drift-agent/")
        directory, filename = file_path.rsplit("/", 1)
        mount = mounts_of(agent)[directory]
        assert mount["readOnly"] is True and "subPath" not in mount  # rotation reaches the agent
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] == secret_name
        assert secret["items"] == [{"key": key, "path": filename}]
    # The model container sees none of them.
    assert "volumeMounts" not in chart.container(spec, "model")
    assert chart.find(docs, "Secret") == []
    for config_map in chart.find(docs, "ConfigMap"):
        for text in config_map["data"].values():
            for secret_name, _key in expected.values():
                assert secret_name not in text  # names of Secrets stay in the pod spec


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("agent.kafka.sasl_password", "hunter2", "agent.kafka.sasl_password"),
        ("agent.alerting.sinks", [{"name": "s", "type": "slack", "webhook_url": "https://hooks.slack.com/x"}],
         "agent.alerting.sinks[0].webhook_url"),
        ("agent.alerting.sinks", [{"name": "p", "type": "pagerduty", "routing_key": "R0UT1NG"}],
         "agent.alerting.sinks[0].routing_key"),
    ],
)  # fmt: skip
def test_inline_secret_values_are_refused_with_the_fix(path: str, value: Any, field: str) -> None:
    message = chart.render_error(with_values(samples.STANDALONE, **{path: value}))
    assert field in message
    assert "secrets are never put in the ConfigMap" in message
    assert "hunter2" not in message and "R0UT1NG" not in message and "hooks.slack.com" not in message


def test_rendered_settings_load_in_the_agent_for_every_value_set(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = load_as_agent(chart.render(samples.SIDECAR), tmp_path, monkeypatch)
    assert sidecar.target.kind == "kubernetes"
    assert sidecar.target.kubernetes.deployment == "churn-server"
    assert sidecar.target.kubernetes.namespace == chart.NAMESPACE
    assert sidecar.leader_election.enabled is True
    assert sidecar.leader_election.lease_name == "drift-agent"
    assert sidecar.leader_election.namespace == chart.NAMESPACE
    assert sidecar.kafka.sasl_password_file == pathlib.Path(
        "/var/run/secrets/drift-agent/kafka/sasl-password"
    )
    assert sidecar.runtime.model_name == "churn"

    kserve = load_as_agent(chart.render(samples.KSERVE), tmp_path, monkeypatch)
    assert kserve.target.kind == "kserve"
    assert (kserve.target.kserve.name, kserve.target.kserve.namespace) == ("churn", chart.NAMESPACE)

    standalone = load_as_agent(chart.render(samples.STANDALONE), tmp_path, monkeypatch)
    assert standalone.target.kubernetes.canary_deployment == "churn-canary"

    minimal = load_as_agent(chart.render(samples.MINIMAL), tmp_path, monkeypatch)
    assert minimal.http.port == 9108


def test_standalone_runs_the_agent_as_its_own_deployment() -> None:
    docs = chart.render(samples.STANDALONE)
    deployment = chart.only(docs, "Deployment")
    assert deployment["metadata"]["name"] == chart.FULLNAME
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert [c["name"] for c in spec["containers"]] == ["drift-agent"]
    role = chart.only(docs, "Role")
    deployment_rule = next(rule for rule in role["rules"] if rule["resources"] == ["deployments"])
    assert deployment_rule["resourceNames"] == ["churn-server", "churn-canary"]


def test_kserve_target_grants_the_inferenceservice_and_renders_no_serving_deployment() -> None:
    docs = chart.render(samples.KSERVE)
    assert [d["metadata"]["name"] for d in chart.find(docs, "Deployment")] == [chart.FULLNAME]
    rules = chart.only(docs, "Role")["rules"]
    assert {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
            "resourceNames": ["churn"], "verbs": ["get", "patch"]} in rules  # fmt: skip
    assert not [rule for rule in rules if rule["resources"] == ["deployments"]]
    message = chart.render_error(with_values(samples.KSERVE, mode="sidecar"))
    assert "mode=sidecar renders the serving Deployment, which needs target.kind=kubernetes" in message


def test_metrics_service_and_pdb_select_the_pods_that_run_the_agent() -> None:
    for values, deployment in ((samples.SIDECAR, "churn-server"), (samples.STANDALONE, chart.FULLNAME)):
        docs = chart.render(values)
        pod_labels = chart.only(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
        service = chart.only(docs, "Service", f"{chart.FULLNAME}-metrics")
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"] == [{"name": "metrics", "port": 9108, "targetPort": "agent-metrics",
                                             "protocol": "TCP"}]  # fmt: skip
        pdb = chart.only(docs, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pdb["spec"]["maxUnavailable"] == 1


def test_pdb_takes_exactly_one_bound() -> None:
    half = {"minAvailable": "50%", "maxUnavailable": None}
    docs = chart.render(with_values(samples.STANDALONE, podDisruptionBudget=half))
    assert chart.only(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": "50%",
        "selector": {"matchLabels": {"drift-agent.io/release": chart.FULLNAME}},
    }
    message = chart.render_error(with_values(samples.STANDALONE, podDisruptionBudget={"minAvailable": 1}))
    assert "set exactly one of minAvailable and maxUnavailable" in message


def test_servicemonitor_scrapes_the_metrics_service_under_a_job_the_alert_rules_match() -> None:
    monitor_values = {"enabled": True, "labels": {"release": "kps"}}
    docs = chart.render(with_values(samples.SIDECAR, **{"metrics.serviceMonitor": monitor_values}))
    monitor = chart.only(docs, "ServiceMonitor")
    service = chart.only(docs, "Service", f"{chart.FULLNAME}-metrics")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    rules = yaml.safe_load((chart.CONFIG_DIR / "prometheus-rules.yaml").read_text(encoding="utf-8"))
    up_rule = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "DriftAgentDown")
    assert 'job=~".*drift-agent.*"' in up_rule["expr"]
    assert "drift-agent" in job


def test_settings_changes_roll_the_pods_and_override_changes_do_not() -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = chart.render(values)
        annotations = chart.only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/drift-agent-config"]
        return value

    base = checksum(samples.SIDECAR)
    assert checksum(with_values(samples.SIDECAR, **{"agent.window": {"size": 5000}})) != base
    assert checksum(with_values(samples.SIDECAR, policy={"plans": {"minor": ["log"]}})) != base
    muted = {"mute": [{"model": "churn", "until": "2030-01-31T18:00:00Z", "reason": "DATA-123"}]}
    changed = chart.render(with_values(samples.SIDECAR, overrides=muted))
    assert yaml.safe_load(chart.config_map_file(changed, "overrides", "overrides.yaml")) == muted
    assert checksum(with_values(samples.SIDECAR, overrides=muted)) == base


def test_default_policy_and_override_files_are_the_shipped_ones() -> None:
    docs = chart.render(samples.MINIMAL)
    for suffix, name in (("policy", "policy.yaml"), ("overrides", "overrides.yaml")):
        shipped = (chart.CONFIG_DIR / name).read_text(encoding="utf-8")
        rendered = chart.config_map_file(docs, suffix, name)
        assert rendered.rstrip("\n") == shipped.rstrip("\n")
        # No trailing blanks: `kubectl edit` then shows a readable block, not one quoted line.
        assert not [line for line in rendered.splitlines() if line != line.rstrip()]


def test_values_policy_replaces_the_default() -> None:
    policy = {"model_name": "churn", "plans": {"minor": ["log"], "moderate": ["alert"]}}
    docs = chart.render(with_values(samples.MINIMAL, policy=policy))
    assert yaml.safe_load(chart.config_map_file(docs, "policy", "policy.yaml")) == policy


@pytest.mark.parametrize(
    ("path", "value", "hint"),
    [
        ("agent.target.kind", "local", "set target.kind instead"),
        ("agent.target.kubernetes.deployment", "other", "set target.kubernetes.deployment instead"),
        ("agent.leader_election.lease_name", "x", "set leaderElection.leaseName instead"),
        ("agent.overrides.path", "/tmp/o.yaml", "set the top-level overrides value instead"),
        ("agent.kafka.sasl_password_file", "/x", "set secrets.kafkaSasl instead"),
        ("agent.runtime.state_dir", "/data", "remove it (an emptyDir the chart mounts"),
        ("agent.retrain.runner.kind", "kubernetes", "set retrain.runner instead"),
    ],
)
def test_settings_the_chart_owns_are_refused_in_values_agent(path: str, value: Any, hint: str) -> None:
    message = chart.render_error(with_values(samples.MINIMAL, **{path: value}))
    assert f"{path} is set by the chart; {hint}" in message


def test_settings_the_chart_does_not_own_pass_through() -> None:
    values = with_values(samples.MINIMAL, **{"agent.target.kubernetes.mode": "image",
                                             "agent.target.dry_run": True})  # fmt: skip
    target = chart.agent_settings(chart.render(values))["target"]
    assert target["dry_run"] is True
    assert target["kubernetes"]["mode"] == "image"
    assert target["kubernetes"]["deployment"] == "model-server"


def test_secret_entry_for_an_unknown_sink_names_it() -> None:
    values = with_values(
        samples.SIDECAR, **{"secrets.sinks": [{"sink": "slak", "secretName": "s", "key": "k"}]}
    )
    assert 'secrets.sinks[0].sink: no sink named "slak" in agent.alerting.sinks' in chart.render_error(values)


def test_sidecar_needs_a_serving_image_and_several_standalone_replicas_need_a_leader() -> None:
    assert "serving.image.repository is required in mode=sidecar" in chart.render_error({"mode": "sidecar"})
    message = chart.render_error(with_values(samples.STANDALONE, **{"leaderElection.enabled": False}))
    assert "standalone.replicas > 1 needs leaderElection.enabled=true" in message


def test_kubernetes_retrain_runner_is_granted_jobs_and_configured_in_the_release_namespace() -> None:
    pvc_mount = {"name": "retrain-work", "mountPath": "/var/lib/drift-agent/.state/retrain"}
    values = with_values(
        samples.STANDALONE,
        **{
            "retrain.runner": "kubernetes",
            "extraVolumes": [{"name": "retrain-work", "persistentVolumeClaim": {"claimName": "retrain"}}],
            "extraVolumeMounts": [pvc_mount],
        },
    )
    docs = chart.render(values)
    runner = chart.agent_settings(docs)["retrain"]["runner"]
    assert runner == {"kind": "kubernetes", "kubernetes": {"namespace": chart.NAMESPACE}}
    rules = chart.only(docs, "Role")["rules"]
    (jobs,) = [rule for rule in rules if rule["resources"] == ["jobs"]]
    assert jobs["verbs"] == ["create", "get", "delete"]  # what the runner calls, nothing more
    spec = pod_spec(docs, chart.FULLNAME)
    assert pvc_mount in chart.container(spec, "drift-agent")["volumeMounts"]
    assert {"name": "retrain-work", "persistentVolumeClaim": {"claimName": "retrain"}} in spec["volumes"]
    without = chart.agent_settings(chart.render(samples.STANDALONE))
    assert "retrain" not in without
    assert not any(
        rule["resources"] == ["jobs"]
        for rule in chart.only(chart.render(samples.STANDALONE), "Role")["rules"]
    )


def test_a_sink_secret_given_twice_is_refused() -> None:
    values = copy.deepcopy(samples.SIDECAR)
    values["agent"]["alerting"]["sinks"][0]["webhook_url_env"] = "SLACK_URL"
    message = chart.render_error(values)
    assert "agent.alerting.sinks (slack-ml): webhook_url_file comes from secrets.sinks[0]" in message

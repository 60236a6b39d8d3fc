"""Value sets the tests render and install: sidecar, standalone, KServe target, minimal."""

from __future__ import annotations

from typing import Any

SIDECAR: dict[str, Any] = {
    "mode": "sidecar",
    "target": {"kubernetes": {"deployment": "churn-server", "container": "model"}},
    "serving": {
        "replicas": 2,
        "image": {"repository": "registry.local/models/churn-server", "tag": "2.1"},
        "args": ["--port", "8080"],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "modelUri": "s3://models/churn/3",
        "modelVersion": "3",
        "resources": {
            "requests": {"cpu": 4, "memory": "16Gi"},
            "limits": {"memory": "16Gi"},
        },  # a bare number on purpose
        "gpu": {"count": 2},
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
    },
    "agent": {
        "kafka": {
            "bootstrap_servers": "kafka.data.svc:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "drift-agent",
        },
        "runtime": {"drain_timeout_s": 25, "model_name": "churn"},
        "alerting": {
            "sinks": [
                {"name": "slack-ml", "type": "slack"},
                {"name": "pagerduty-ml", "type": "pagerduty"},
                {"name": "incident-bot", "type": "webhook", "url": "https://bot.internal.example/hook"},
                {"name": "log", "type": "null"},
            ],
            "alert_sinks": ["slack-ml", "incident-bot", "log"],
            "page_sinks": ["pagerduty-ml", "log"],
        },
    },
    "secrets": {
        "kafkaSasl": {"secretName": "kafka-credentials", "key": "password"},
        "sinks": [
            {"sink": "slack-ml", "secretName": "drift-agent-slack", "key": "webhook-url"},
            {"sink": "pagerduty-ml", "secretName": "drift-agent-pagerduty", "key": "routing-key"},
            {"sink": "incident-bot", "secretName": "drift-agent-webhook", "key": "hmac"},
        ],
    },
}

STANDALONE: dict[str, Any] = {
    "mode": "standalone",
    "standalone": {"replicas": 2},
    "target": {"kubernetes": {"deployment": "churn-server", "canaryDeployment": "churn-canary"}},
}

KSERVE: dict[str, Any] = {
    "mode": "standalone",
    "target": {"kind": "kserve", "kserve": {"inferenceService": "churn"}},
}

MINIMAL: dict[str, Any] = {}

"""The alert rules the chart ships and the PrometheusRule it renders from them.

Shared by the chart's monitoring tests (tests/unit/helm) and its promtool checks
(tests/integration/helm).
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.helm import chart, samples


def shipped_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(
        (chart.CONFIG_DIR / "prometheus-rules.yaml").read_text(encoding="utf-8")
    )
    return rules


def rendered_prometheus_rule() -> chart.Doc:
    enabled = {"prometheusRule": {"enabled": True, "labels": {"role": "alert-rules"}}}
    docs = chart.render(samples.SIDECAR | {"metrics": enabled})
    return chart.only(docs, "PrometheusRule")

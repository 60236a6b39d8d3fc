"""Sink types by name, and building the configured sinks from ``AlertingConfig``.

The builders are a registry passed in (``DEFAULT_BUILDERS`` unless a caller adds its own); an
unknown type name fails at start-up with the list of valid names, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import prometheus_client

from actions.alerts import alertmanager, base, config, pagerduty, secret_refs, slack, webhook
from actions.alerts import delivery as delivery_mod
from actions.alerts import metrics as metrics_mod

Builder = Callable[[config.SinkConfig, base.SinkOptions], base.AlertSink]
ConfigT = TypeVar("ConfigT")


class UnknownSinkError(ValueError):
    pass


def _setting(cfg: config.SinkConfig, name: str) -> str:
    return f"alerting.sinks[{cfg.name}].{name}"


def _expect(cfg: config.SinkConfig, cls: type[ConfigT]) -> ConfigT:
    if not isinstance(cfg, cls):
        raise TypeError(f"sink {cfg.name}: builder for {cls.__name__} got {type(cfg).__name__}")
    return cfg


def options_for(
    cfg: config.SinkConfig, metrics: metrics_mod.SinkMetrics, runtime: base.Runtime
) -> base.SinkOptions:
    retry = cfg.retry
    bucket = None
    if cfg.rate_limit is not None:
        bucket = delivery_mod.TokenBucket(
            cfg.rate_limit.per_minute, cfg.rate_limit.burst, runtime.clocks.monotonic
        )
    return base.SinkOptions(
        metrics=metrics,
        runtime=runtime,
        min_severity=cfg.min_severity,
        retry=delivery_mod.RetryPolicy(
            max_attempts=retry.max_attempts,
            base_delay_s=retry.base_delay_s,
            max_delay_s=retry.max_delay_s,
            timeout_s=retry.timeout_s,
            max_total_s=retry.max_total_s,
        ),
        rate_limit=bucket,
    )


def _null(cfg: config.SinkConfig, options: base.SinkOptions) -> base.AlertSink:
    return base.NullSink(cfg.name, min_severity=cfg.min_severity, metrics=options.metrics)


def _slack(cfg: config.SinkConfig, options: base.SinkOptions) -> base.AlertSink:
    c = _expect(cfg, config.SlackSinkConfig)
    ref = secret_refs.SecretRef(_setting(c, "webhook_url"), c.webhook_url_env, c.webhook_url_file)
    return slack.SlackSink(c.name, options, webhook_url=ref)


def _pagerduty(cfg: config.SinkConfig, options: base.SinkOptions) -> base.AlertSink:
    c = _expect(cfg, config.PagerDutySinkConfig)
    return pagerduty.PagerDutySink(
        c.name,
        options,
        routing_key=secret_refs.SecretRef(_setting(c, "routing_key"), c.routing_key_env, c.routing_key_file),
        base_url=str(c.base_url),
        source=c.source,
        component=c.component,
        group=c.group,
        event_class=c.event_class,
    )


def _alertmanager(cfg: config.SinkConfig, options: base.SinkOptions) -> base.AlertSink:
    c = _expect(cfg, config.AlertmanagerSinkConfig)
    token = None
    if c.bearer_token_env is not None or c.bearer_token_file is not None:
        token = secret_refs.SecretRef(_setting(c, "bearer_token"), c.bearer_token_env, c.bearer_token_file)
    return alertmanager.AlertmanagerSink(
        c.name,
        options,
        url=str(c.url),
        alertname=c.alertname,
        firing_ttl_s=c.firing_ttl_s,
        bearer_token=token,
        now=options.runtime.clocks.wall,
    )


def _webhook(cfg: config.SinkConfig, options: base.SinkOptions) -> base.AlertSink:
    c = _expect(cfg, config.WebhookSinkConfig)
    url: str | secret_refs.SecretRef = (
        str(c.url) if c.url is not None else secret_refs.SecretRef(_setting(c, "url"), c.url_env, c.url_file)
    )
    return webhook.WebhookSink(
        c.name,
        options,
        url=url,
        secret=secret_refs.SecretRef(_setting(c, "secret"), c.secret_env, c.secret_file),
        now=options.runtime.clocks.wall,
    )


DEFAULT_BUILDERS: Mapping[str, Builder] = {
    "null": _null,
    "slack": _slack,
    "pagerduty": _pagerduty,
    "alertmanager": _alertmanager,
    "webhook": _webhook,
}


def builder_for(type_name: str, builders: Mapping[str, Builder] = DEFAULT_BUILDERS) -> Builder:
    try:
        return builders[type_name]
    except KeyError:
        raise UnknownSinkError(
            f"unknown sink type {type_name!r}; valid types are {', '.join(sorted(builders))}"
        ) from None


def build_sinks(
    alerting: config.AlertingConfig,
    *,
    registry: prometheus_client.CollectorRegistry,
    runtime: base.Runtime | None = None,
    builders: Mapping[str, Builder] = DEFAULT_BUILDERS,
) -> dict[str, base.AlertSink]:
    """One sink per configured entry, sharing one set of metrics registered in ``registry``."""
    metrics = metrics_mod.SinkMetrics(registry)
    runtime = runtime or base.Runtime()
    return {
        cfg.name: builder_for(cfg.type, builders)(cfg, options_for(cfg, metrics, runtime))
        for cfg in alerting.sinks
    }

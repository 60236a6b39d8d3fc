"""The ``alerting`` settings group: which sinks exist, how each behaves, which get ALERT vs PAGE.

Secrets are never written here: a sink names the env var (``*_env``) or mounted file
(``*_file``) that holds its webhook URL, routing key, token or HMAC secret. An inline secret key
is rejected with the names to use instead.
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal

import pydantic

from actions import vocabulary

SINK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DEFAULT_OVERRIDE_HINT = (
    "To mute: add {{model: {model}, until: <RFC 3339 time>}} under `mute:` in the on-call override file; "
    "to acknowledge: add {incident_id} under `acknowledge:`; to stop automatic actions: `freeze:`."
)
# Keys people reach for first; each maps to the file/env pair that replaces it.
_INLINE_SECRET_KEYS = ("webhook_url", "routing_key", "secret", "bearer_token", "token", "password")


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class RateLimitConfig(_Model):
    per_minute: float = pydantic.Field(
        30.0, gt=0, description="Sustained notifications per minute this sink may send (token refill rate)."
    )
    burst: int = pydantic.Field(
        10, ge=1, description="Notifications that may go out at once before the limit bites."
    )


class RetryConfig(_Model):
    max_attempts: int = pydantic.Field(
        4,
        ge=1,
        le=20,
        description="Attempts per notification, the first included (429, 5xx, network errors retry).",
    )
    base_delay_s: float = pydantic.Field(
        0.5,
        gt=0,
        description="Backoff cap after the first failure; doubles each attempt (full jitter below it).",
    )
    max_delay_s: float = pydantic.Field(30.0, gt=0, description="Largest backoff cap between attempts.")
    timeout_s: float = pydantic.Field(5.0, gt=0, description="Timeout of one HTTP attempt.")
    max_total_s: float = pydantic.Field(
        30.0, gt=0, description="Bound on one delivery, attempts and waits included; then it fails."
    )


class _SinkBase(_Model):
    name: str = pydantic.Field(
        pattern=SINK_NAME_PATTERN,
        description="Unique sink name, used in routes, logs and the `sink` metric label.",
    )
    min_severity: vocabulary.Severity = pydantic.Field(
        vocabulary.Severity.NONE,
        description="Skip notifications below this severity (none|minor|moderate|severe|critical).",
    )
    rate_limit: RateLimitConfig | None = pydantic.Field(
        default_factory=RateLimitConfig,
        description="Token bucket for this sink; null disables it. Resolves are never dropped by it.",
    )
    retry: RetryConfig = pydantic.Field(default_factory=RetryConfig, description="Retries and time bounds.")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _INLINE_SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"{key}: secrets are never set inline; use {key}_file (a mounted Secret) "
                        f"or {key}_env (an environment variable) where this sink type supports it"
                    )
        return data


def _one_of(model: _Model, setting: str, *, required: bool) -> None:
    env = getattr(model, f"{setting}_env")
    file = getattr(model, f"{setting}_file")
    if env is not None and file is not None:
        raise ValueError(f"{setting}_env and {setting}_file are both set; keep one")
    if required and env is None and file is None:
        raise ValueError(
            f"{setting}: give {setting}_env (variable name) or {setting}_file (mounted file path)"
        )


class NullSinkConfig(_SinkBase):
    type: Literal["null"] = pydantic.Field(description="Logs notifications only.")


class SlackSinkConfig(_SinkBase):
    type: Literal["slack"] = pydantic.Field(description="Slack incoming webhook (Block Kit message).")
    webhook_url_env: str | None = pydantic.Field(
        None, description="Env var holding the incoming-webhook URL."
    )
    webhook_url_file: pathlib.Path | None = pydantic.Field(
        None, description="File holding the incoming-webhook URL (e.g. /var/run/secrets/slack/url)."
    )

    @pydantic.model_validator(mode="after")
    def _secret(self) -> SlackSinkConfig:
        _one_of(self, "webhook_url", required=True)
        return self


class PagerDutySinkConfig(_SinkBase):
    type: Literal["pagerduty"] = pydantic.Field(description="PagerDuty Events API v2.")
    routing_key_env: str | None = pydantic.Field(
        None, description="Env var holding the integration routing key."
    )
    routing_key_file: pathlib.Path | None = pydantic.Field(None, description="File holding the routing key.")
    base_url: pydantic.AnyHttpUrl = pydantic.Field(
        pydantic.AnyHttpUrl("https://events.pagerduty.com"),
        description="Events API base (/v2/enqueue, /v2/change/enqueue appended); EU events.eu.pagerduty.com",
    )
    source: str = pydantic.Field("drift-agent", description="payload.source: where the event comes from.")
    component: str | None = pydantic.Field(None, description="payload.component; null = the model name.")
    group: str | None = pydantic.Field(None, description="payload.group, e.g. the serving namespace.")
    event_class: str = pydantic.Field("model-drift", description="payload.class: the kind of event.")

    @pydantic.model_validator(mode="after")
    def _secret(self) -> PagerDutySinkConfig:
        _one_of(self, "routing_key", required=True)
        return self


class AlertmanagerSinkConfig(_SinkBase):
    type: Literal["alertmanager"] = pydantic.Field(description="Prometheus Alertmanager API v2.")
    url: pydantic.AnyHttpUrl = pydantic.Field(
        description="Alertmanager base URL; /api/v2/alerts is appended."
    )
    alertname: str = pydantic.Field("ModelDriftIncident", description="The alertname label of every alert.")
    firing_ttl_s: float = pydantic.Field(
        6 * 3600.0,
        gt=0,
        description="A firing alert gets endsAt = now + this; an update re-arms it, a resolve ends it now.",
    )
    bearer_token_env: str | None = pydantic.Field(
        None, description="Env var with a bearer token, if it is behind auth."
    )
    bearer_token_file: pathlib.Path | None = pydantic.Field(None, description="File with that bearer token.")

    @pydantic.model_validator(mode="after")
    def _secret(self) -> AlertmanagerSinkConfig:
        _one_of(self, "bearer_token", required=False)
        return self


class WebhookSinkConfig(_SinkBase):
    type: Literal["webhook"] = pydantic.Field(description="Generic JSON webhook, HMAC-signed.")
    url: pydantic.AnyHttpUrl | None = pydantic.Field(
        None, description="Receiver URL (when it holds no token)."
    )
    url_env: str | None = pydantic.Field(
        None, description="Env var with the receiver URL (when it holds a token)."
    )
    url_file: pathlib.Path | None = pydantic.Field(None, description="File with the receiver URL.")
    secret_env: str | None = pydantic.Field(None, description="Env var with the HMAC-SHA256 signing secret.")
    secret_file: pathlib.Path | None = pydantic.Field(
        None, description="File with the HMAC-SHA256 signing secret."
    )

    @pydantic.model_validator(mode="after")
    def _secrets(self) -> WebhookSinkConfig:
        given = [name for name in ("url", "url_env", "url_file") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, url_env, url_file (got {given or 'none'})")
        _one_of(self, "secret", required=True)
        return self


SinkConfig = Annotated[
    NullSinkConfig | SlackSinkConfig | PagerDutySinkConfig | AlertmanagerSinkConfig | WebhookSinkConfig,
    pydantic.Field(discriminator="type"),
]


def _default_sinks() -> list[SinkConfig]:
    return [NullSinkConfig(name="log", type="null")]


class AlertingConfig(_Model):
    """Alert sinks and routing. ALERT goes to ``alert_sinks``, PAGE to ``page_sinks``, RESOLVE to both;
    data-quality notifications to ``data_owner_sinks`` when set."""

    sinks: list[SinkConfig] = pydantic.Field(
        default_factory=_default_sinks,
        description="Configured sinks; type is one of null, slack, pagerduty, alertmanager, webhook.",
    )
    alert_sinks: list[str] = pydantic.Field(
        default_factory=lambda: ["log"], description="Sink names that receive ALERT notifications."
    )
    page_sinks: list[str] = pydantic.Field(
        default_factory=lambda: ["log"],
        description="Sink names that receive PAGE notifications (high urgency, e.g. pagerduty).",
    )
    data_owner_sinks: list[str] | None = pydantic.Field(
        None,
        description="Sink names that receive data-quality alerts, pages and resolves (the data owner's "
        "channel: a broken pipeline is theirs to fix); null = alert_sinks and page_sinks. A policy "
        "rule's sinks route single features elsewhere.",
    )
    dashboard_url_template: str | None = pydantic.Field(
        None,
        description="Dashboard link; placeholders {model}, {model_version}, {incident_id}, {severity}.",
    )
    runbook_url: str | None = pydantic.Field(None, description="Runbook link added to every notification.")
    override_hint_template: str = pydantic.Field(
        DEFAULT_OVERRIDE_HINT,
        description="How to mute/acknowledge/freeze, shown in every notification; same placeholders.",
    )

    @pydantic.model_validator(mode="after")
    def _routes_name_sinks(self) -> AlertingConfig:
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sinks: names must be unique, repeated: {duplicates}")
        for route in ("alert_sinks", "page_sinks", "data_owner_sinks"):
            unknown = [name for name in getattr(self, route) or () if name not in names]
            if unknown:
                raise ValueError(f"{route}: unknown sink names {unknown}; configured sinks are {names}")
        return self

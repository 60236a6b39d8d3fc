"""Generic JSON webhook, signed so the receiver can trust and de-duplicate it.

Body: ``Notification.to_json()`` plus ``"schema": "drift-agent.notification/v1"``.
Headers:
- ``X-Drift-Agent-Timestamp``: Unix seconds when the body was signed;
- ``X-Drift-Agent-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, ``<timestamp>.`` + body).
The timestamp is inside the signed material, so a captured request cannot be replayed later
with a fresh timestamp; receivers reject timestamps outside a tolerance (``verify`` uses
5 minutes) and may de-duplicate on the body's ``incident_id`` + ``event``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from actions.alerts import base, notification, secret_refs
from actions.alerts import transport as transport_mod

SCHEMA = "drift-agent.notification/v1"
SIGNATURE_HEADER = "X-Drift-Agent-Signature"
TIMESTAMP_HEADER = "X-Drift-Agent-Timestamp"
DEFAULT_TOLERANCE_S = 300.0


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver runs: a fresh timestamp and a matching signature, compared in constant time."""
    if not timestamp_header or not signature_header or not timestamp_header.isdigit():
        return False
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature_header)


class WebhookSink(base.HttpSink):
    def __init__(
        self,
        name: str,
        options: base.SinkOptions,
        *,
        url: secret_refs.SecretRef | str,
        secret: secret_refs.SecretRef,
        now: Callable[[], float],
    ) -> None:
        super().__init__(name, options)
        self._url = url
        self._secret = secret
        self._now = now

    def payload(self, n: notification.Notification) -> Mapping[str, Any] | None:
        return {"schema": SCHEMA, **n.to_json()}

    def request(self, n: notification.Notification, body: Mapping[str, Any]) -> transport_mod.HttpRequest:
        url = self._url if isinstance(self._url, str) else self._url.read(self._runtime.environ).value
        secret = self._secret.read(self._runtime.environ).value.encode("utf-8")
        raw = base.json_body(body)
        timestamp = int(self._now())
        headers = {
            **base.JSON_HEADERS,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, raw),
        }
        return transport_mod.HttpRequest("POST", url, headers, raw)

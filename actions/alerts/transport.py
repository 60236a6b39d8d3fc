"""One HTTP exchange, behind a callable so tests and other clients can swap it.

A transport returns every HTTP status as an ``HttpResponse`` (retry decisions belong to the
caller) and raises ``TransportError`` only when no status came back. Its messages never carry
the URL: for Slack and many webhooks the URL is the secret.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping

MAX_RESPONSE_BYTES = 64 * 1024  # receivers answer with short status bodies; never buffer more


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str = dataclasses.field(repr=False)  # may embed a token: keep it out of reprs and logs
    headers: Mapping[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TransportError(Exception):
    """No HTTP status came back (refused, reset, DNS, timeout). ``kind`` is safe to log."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


Transport = Callable[[HttpRequest, float], HttpResponse]
"""``transport(request, timeout_s) -> response``; raises ``TransportError``."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # Following a redirect would re-send the payload (and auth) to a host nobody configured.
    def redirect_request(  # noqa: PLR0917 - urllib fixes this signature
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def urllib_transport(request: HttpRequest, timeout_s: float) -> HttpResponse:
    """The default transport: stdlib urllib, no redirects, bounded response size."""
    if not request.url.startswith(("http://", "https://")):
        raise TransportError("unsupported_scheme")
    prepared = urllib.request.Request(  # noqa: S310 - scheme checked above
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with _OPENER.open(prepared, timeout=timeout_s) as reply:
            return HttpResponse(reply.status, _lower(reply.headers.items()), reply.read(MAX_RESPONSE_BYTES))
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read(MAX_RESPONSE_BYTES) if exc.fp is not None else b""
        return HttpResponse(exc.code, _lower(exc.headers.items() if exc.headers else ()), body)
    except urllib.error.URLError as exc:
        raise TransportError(_kind(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(_kind(exc)) from None


def _lower(items: Iterable[tuple[str, object]]) -> dict[str, str]:
    return {name.lower(): str(value) for name, value in items}


def _kind(reason: object) -> str:
    # Only the exception class (and errno name) is reported: str(exc) may contain the URL.
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(reason, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(reason, ConnectionResetError):
        return "connection_reset"
    if isinstance(reason, socket.gaierror):
        return "dns"
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return "network"

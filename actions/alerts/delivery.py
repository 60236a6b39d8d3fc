"""Getting one request accepted: bounded retries with backoff, and a per-sink rate limit.

Retry on the error type: 429, 5xx and network errors are temporary; any other status is
permanent (the payload or the credentials are wrong, and sending it again cannot help).
Waits use "full jitter" (a uniform draw up to the exponential cap) so many agents retrying
after the same outage do not arrive together; a receiver's Retry-After wins over the draw.
The whole delivery, waits included, ends within ``max_total_s`` so a receiver that is down
cannot hold a handler thread for long.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import threading
from collections.abc import Callable

from actions.alerts import transport as transport_mod


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 5.0
    max_total_s: float = 30.0


@dataclasses.dataclass(frozen=True)
class Delivery:
    """How a delivery ended. ``failure`` is None when the receiver accepted (2xx)."""

    attempts: int
    response: transport_mod.HttpResponse | None
    failure: str | None = None  # http_4xx | http_429 | http_5xx | network | deadline ...
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.failure is None


@dataclasses.dataclass
class Clocks:
    """Time as the delivery sees it; tests pass a fake whose sleep advances monotonic."""

    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    wall: Callable[[], float]
    rng: random.Random


def deliver(
    request: transport_mod.HttpRequest,
    *,
    transport: transport_mod.Transport,
    policy: RetryPolicy,
    clocks: Clocks,
    on_retry: Callable[[], None] = lambda: None,
) -> Delivery:
    deadline = clocks.monotonic() + policy.max_total_s
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clocks.monotonic()
        if remaining <= 0:
            return Delivery(attempt - 1, None, "deadline", f"gave up after {policy.max_total_s:g} s")
        retry_after: float | None = None
        response: transport_mod.HttpResponse | None = None
        try:
            response = transport(request, min(policy.timeout_s, remaining))
        except transport_mod.TransportError as exc:
            failure, detail = "network", exc.kind
        else:
            if 200 <= response.status < 300:
                return Delivery(attempt, response)
            failure, detail = f"http_{response.status // 100}xx", f"HTTP {response.status}"
            if response.status == 429:
                failure = "http_429"
                retry_after = parse_retry_after(response.header("retry-after"), clocks.wall())
            elif response.status < 500:
                return Delivery(attempt, response, failure, detail)
        if attempt >= policy.max_attempts:
            return Delivery(attempt, response, failure, f"{detail}; {attempt} attempts")
        cap = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
        delay = retry_after if retry_after is not None else clocks.rng.uniform(0, cap)
        if clocks.monotonic() + delay >= deadline:
            why = f"{detail}; next wait {delay:g} s would pass the {policy.max_total_s:g} s bound"
            return Delivery(attempt, response, failure, why)
        on_retry()
        clocks.sleep(delay)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


class TokenBucket:
    """At most ``burst`` sends at once, refilled at ``per_minute``; thread-safe."""

    def __init__(self, per_minute: float, burst: int, monotonic: Callable[[], float]) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("rate limit needs per_minute > 0 and burst >= 1")
        self._rate_per_s = per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._monotonic = monotonic
        self._last = monotonic()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate_per_s)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
